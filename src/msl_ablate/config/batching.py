"""A stage's global batch: per-device batch x devices x gradient accumulation.

The reference recipe states global batches (LLaVA-1.5: 256 in stage 1, 128 in stage 2, as 8
GPUs x 32 or x 16 per device); ``strategy.stages.<stage>.batch_size`` is what one device holds
per forward pass. With ``global_batch_size`` set, gradient accumulation makes up the rest on
any number of devices, so one recipe means the same optimisation on 1 GPU or 16.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from msl_ablate.utils.errors import ConfigError


def world_size(trainer: DictConfig) -> int | None:
    """Processes that train together: devices per node x nodes; None while ``devices`` is
    ``auto`` or ``-1`` (Lightning counts them when the trainer starts)."""
    devices: Any = trainer.devices
    if not isinstance(devices, int | str):  # a list of device ids
        per_node = len(devices)
    elif str(devices).isdigit() and int(devices) > 0:
        per_node = int(devices)
    else:
        return None
    return per_node * int(trainer.num_nodes)


def accumulation_problem(where: str, stage: DictConfig, processes: int) -> str | None:
    """Why ``global_batch_size`` cannot be made of this stage's batch on ``processes``."""
    if stage.global_batch_size is None:
        return None
    per_step = stage.batch_size * processes
    if stage.global_batch_size < 1 or stage.global_batch_size % per_step:
        fits = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b <= stage.global_batch_size
                       and stage.global_batch_size % (b * processes) == 0})  # fmt: skip
        hint = f"; batch sizes that divide it: {fits}" if fits else ""
        return (
            f"{where}.global_batch_size={stage.global_batch_size} is not a multiple of "
            f"{where}.batch_size x processes = {stage.batch_size} x {processes} = {per_step}"
            f"{hint}"
        )
    return None


def accumulation(stage: DictConfig, processes: int, where: str = "strategy.stages") -> int:
    """Gradient accumulation steps that make the stage's global batch on ``processes``.

    Raises:
        ConfigError: ``global_batch_size`` is not a multiple of ``batch_size x processes``.
    """
    problem = accumulation_problem(f"{where}.{stage.name}", stage, processes)
    if problem is not None:
        raise ConfigError(problem)
    if stage.global_batch_size is None:
        return 1
    return stage.global_batch_size // (stage.batch_size * processes)


def global_batch(stage: DictConfig, processes: int) -> int:
    """Samples per optimizer step over all processes."""
    if stage.global_batch_size is not None:
        return int(stage.global_batch_size)
    return int(stage.batch_size) * processes
