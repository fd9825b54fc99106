"""Where the stage graph's artifacts live: the only module that spells out their paths.

Everything is found by key, never by parsing a folder name::

    <paths.output_dir>/
      stages/<stage_key>/           one stage's result, shared by every run with that key
        inputs.json                 what the key hashes (to see why two keys differ)
        checkpoints/last.ckpt       Lightning checkpoints while unfinished (previous.ckpt too)
        trainable.safetensors       the trained weights
        stage.json                  written last: the stage is finished (metrics, who trained it)
      stages/<stage_key>.lock       held while a process trains the stage
      trainings/<training_key>/     one trained model (= its last stage)
        config.yaml                 what `msl-ablate evaluate` rebuilds the model from
        evals/<benchmark>-<protocol>/   answers.jsonl, metrics.json, evaluation.json (last)
      trainings/<training_key>.lock held while a process trains or evaluates it
      released/<name>/vision, lm/   a release's tower and LM, written by `msl-ablate import`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_CONFIG = "config.yaml"
STAGE_CHECKPOINT = "trainable.safetensors"
STAGE_RECORD = "stage.json"
STAGE_INPUTS = "inputs.json"
EVAL_RECORD = "evaluation.json"
EVAL_DIR = "evals"  # also the artifact folder of the answer files in MLflow


def stages_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "stages"


def trainings_dir(output_dir: str | Path) -> Path:
    """The folder of every trained model's folder."""
    return Path(output_dir) / "trainings"


def released_dir(output_dir: str | Path, name: str) -> Path:
    """Where ``msl-ablate import`` writes a release's tower and LM folders."""
    return Path(output_dir) / "released" / name


@dataclass(frozen=True)
class KeyedFolder:
    """A folder named by a key, with its lock file beside it."""

    root: Path

    @property
    def key(self) -> str:
        return self.root.name

    @property
    def lock(self) -> Path:
        return self.root.with_name(f"{self.root.name}.lock")


class StageLayout(KeyedFolder):
    """The files of one stage key."""

    @classmethod
    def of(cls, output_dir: str | Path, stage_key: str) -> StageLayout:
        return cls(stages_dir(output_dir) / stage_key)

    @property
    def weights(self) -> Path:
        return self.root / STAGE_CHECKPOINT

    @property
    def record(self) -> Path:
        """Written last: its presence means the stage finished."""
        return self.root / STAGE_RECORD

    @property
    def inputs(self) -> Path:
        return self.root / STAGE_INPUTS

    @property
    def resume_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def finished(self) -> bool:
        return self.record.is_file() and self.weights.is_file()


class TrainingLayout(KeyedFolder):
    """The files of one training key: its config and its evaluations."""

    @classmethod
    def of(cls, output_dir: str | Path, training_key: str) -> TrainingLayout:
        return cls(trainings_dir(output_dir) / training_key)

    @property
    def config(self) -> Path:
        return self.root / RUN_CONFIG

    @property
    def evals_dir(self) -> Path:
        return self.root / EVAL_DIR

    def eval_dir(self, benchmark: str, protocol: str) -> Path:
        return self.evals_dir / f"{benchmark}-{protocol}"

    def eval_record(self, benchmark: str, protocol: str) -> Path:
        """Written last: its presence means the evaluation finished."""
        return self.eval_dir(benchmark, protocol) / EVAL_RECORD
