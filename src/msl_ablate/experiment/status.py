"""Where a config stands in the stage graph: each stage, the training, its evaluations.

Read only: nothing is trained, locked or written (the held-out data and the synthetic suite are
generated if missing, since the evaluation protocol hashes their files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from msl_ablate.experiment.layout import StageLayout, TrainingLayout
from msl_ablate.experiment.run import Plan
from msl_ablate.tracking.mlflow_run import TRAINING, Tracker, studies_of
from msl_ablate.training.checkpointing import checkpoint_step, resume_path
from msl_ablate.utils.files import read_json
from msl_ablate.utils.locks import is_held

DONE, RUNNING, FAILED, TODO = "done", "running", "failed", "todo"


@dataclass(frozen=True)
class StageState:
    """One stage: ``finished``, ``step k/N`` (a resumable checkpoint) or ``todo``.

    Attributes:
        trained_by: The MLflow training run that trained it (from its ``stage.json``).
    """

    name: str
    layout: StageLayout
    state: str
    trained_by: str | None


@dataclass(frozen=True)
class TrainingState:
    """One job of a sweep: its training, stages and evaluations.

    Attributes:
        state: ``done`` | ``running`` (a process holds its lock) | ``failed`` (its MLflow run
            is FAILED or KILLED) | ``todo``.
        mlflow: ``(run id, status)`` of its training run, or None.
        evaluations: ``(recorded, asked)``.
        studies: The studies its MLflow run belongs to (a cell shared by several studies);
            it is ``done`` only once it belongs to the config's own study.
    """

    layout: TrainingLayout
    state: str
    mlflow: tuple[str, str] | None
    stages: list[StageState]
    evaluations: tuple[int, int]
    failure: str | None
    studies: tuple[str, ...] = ()


def _stage_state(cfg: DictConfig, name: str, key: str) -> StageState:
    layout = StageLayout.of(cfg.paths.output_dir, key)
    if layout.finished:
        return StageState(name, layout, "finished", read_json(layout.record).get("mlflow_run_id"))
    ckpt = resume_path(layout.resume_dir) if layout.resume_dir.is_dir() else None
    if ckpt is None:
        return StageState(name, layout, TODO, None)
    steps = cfg.strategy.stages[name].max_steps
    return StageState(name, layout, f"step {checkpoint_step(ckpt)}/{steps}", None)


def training_state(cfg: DictConfig, tracker: Tracker | None) -> TrainingState:
    """The state of a config's training (``cfg.paths`` absolute)."""
    plan = Plan.of(cfg, train=True)
    stages = [_stage_state(cfg, name, key) for name, key in plan.keys.items()]
    layout, evaluations = plan.training, plan.evaluations
    mlflow, failure, recorded = None, None, {e.key for e in evaluations if e.record() is not None}
    studies: tuple[str, ...] = ()
    if tracker is not None:
        found = tracker.find(TRAINING, layout.key)
        if found is not None:
            mlflow = (found.info.run_id, found.info.status)
            failure = found.data.tags.get("failure")
            studies = tuple(studies_of(found.data.tags))
        recorded &= set(tracker.finished_evaluations(layout.key))
    n_recorded = sum(e.key in recorded for e in evaluations)
    all_done = all(s.state == "finished" for s in stages) and n_recorded == len(evaluations)
    if is_held(layout.lock):
        state = RUNNING
    elif all_done and (tracker is None or (mlflow and mlflow[1] == "FINISHED"
                                           and cfg.study in studies)):  # fmt: skip
        state = DONE
    elif mlflow is not None and mlflow[1] in ("FAILED", "KILLED"):
        state = FAILED
    else:
        state = TODO
    return TrainingState(layout, state, mlflow, stages, (n_recorded, len(evaluations)), failure,
                         studies)  # fmt: skip


def stage_use(states: list[TrainingState]) -> dict[str, int]:
    """How many jobs of a sweep need each stage key (more than one: shared)."""
    count: dict[str, int] = {}
    for training in states:
        for stage in training.stages:
            count[stage.layout.key] = count.get(stage.layout.key, 0) + 1
    return count


def describe_stage(stage: StageState, training: TrainingState, shared: int, root: Path) -> str:
    """One line: name, key, state, who trained it, how many jobs share it, where it is."""
    who = ""
    if stage.trained_by is not None and training.mlflow is not None:
        own = stage.trained_by == training.mlflow[0]
        who = "trained by this run" if own else f"reused from run {stage.trained_by[:8]}"
    share = f"shared by {shared} jobs" if shared > 1 else ""
    where = _relative(stage.layout.root, root)
    return f"{stage.name:<9} {stage.layout.key}  {stage.state:<10} {who:<26} {share:<16} {where}"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def summary_counts(states: list[TrainingState]) -> dict[str, Any]:
    return {s: sum(t.state == s for t in states) for s in (DONE, RUNNING, FAILED, TODO)}
