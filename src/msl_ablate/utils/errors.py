"""Exception types raised for problems a user can fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """One or more problems in a composed config, all reported at once.

    Args:
        problems: One human-readable line per problem, each naming the config key.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config ({len(self.problems)} problem(s)):\n{lines}")


class DataError(ValueError):
    """A data file or record is malformed; the message names the file and record."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; raised before the optimizer steps on it.

    Args:
        stage: The stage being trained (``align``, ``finetune``).
        step: The global step whose loss is not finite (optimizer steps taken before it).
        value: The loss value (``nan``, ``inf`` or ``-inf``).

    Attributes:
        stage: As given.
        step: As given.
        value: As given.
    """

    def __init__(self, stage: str, step: int, value: float):
        self.stage = stage
        self.step = step
        self.value = value
        super().__init__(
            f"stage {stage}: loss is {value} at step {step} (lower the learning rate "
            f"strategy.stages.{stage}.<component>.lr, raise strategy.stages.{stage}.warmup_ratio, "
            f"or train in bf16/fp32 instead of fp16: trainer.precision)"
        )

    def __reduce__(self):
        # Rebuilt from its arguments, so it survives pickling (multiprocessing, DDP spawn).
        return type(self), (self.stage, self.step, self.value)
