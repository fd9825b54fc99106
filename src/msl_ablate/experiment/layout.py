"""Where a run's files live: the only module that spells out their paths.

``<paths.output_dir>/runs/<run_key>/`` holds the resolved ``config.yaml`` (what ``evaluate``
rebuilds the model from), one folder per stage (``trainable.safetensors`` once finished,
Lightning's ``checkpoints/last.ckpt`` for resuming) and ``eval/<benchmark>/`` (answers, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_CONFIG = "config.yaml"
STAGE_CHECKPOINT = "trainable.safetensors"
EVAL_DIR = "eval"  # also the artifact folder of the answer files in MLflow


def runs_dir(output_dir: str | Path) -> Path:
    """The folder of every run's folder."""
    return Path(output_dir) / "runs"


@dataclass(frozen=True)
class RunLayout:
    """The files of one run.

    Attributes:
        root: ``<paths.output_dir>/runs/<run_key>``.
    """

    root: Path

    @classmethod
    def of(cls, output_dir: str | Path, run_key: str) -> RunLayout:
        return cls(runs_dir(output_dir) / run_key)

    @property
    def config(self) -> Path:
        return self.root / RUN_CONFIG

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stage_checkpoint(self, stage: str) -> Path:
        """The stage's trainable weights; its presence means the stage finished."""
        return self.stage_dir(stage) / STAGE_CHECKPOINT

    def resume_dir(self, stage: str) -> Path:
        """Lightning's checkpoints of an unfinished stage (``last.ckpt`` resumes it)."""
        return self.stage_dir(stage) / "checkpoints"

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR
