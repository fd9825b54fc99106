"""MLflow as the record of the stage graph: one run per training key, nested runs per evaluation.

* A **training run** (tag ``kind=training``, ``training_key``) holds the model's config as
  params, its axes and weight provenance as tags, one ``study.<name>`` tag per study that asked
  for this model (two studies may share a cell), and the curves of every stage
  (``<stage>/train/loss``), copied from the run that trained a stage when it was reused.
  A resumed training reopens its own run, so its steps continue in one curve.
* An **evaluation run** (``kind=evaluation``, ``evaluation_key``), nested under the training
  run, holds one benchmark's metrics under one protocol, the protocol as params and the
  answer files as artifacts.

Runs are found by those tags, never by name; ``Tracker.open`` returns a finished run as it is
and reopens an unfinished one (FAILED, KILLED or a RUNNING one whose process is gone).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger
from msl_ablate.utils.signals import deferred_signals, shielded

log = get_logger(__name__)

TRAINING, EVALUATION = "training", "evaluation"
KEY_TAG = {TRAINING: "training_key", EVALUATION: "evaluation_key"}
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
# MLflow's limits per log_batch call.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# A training belongs to every study that asked for it: one tag per study, so a second study that
# finds the model trained only adds its tag (no read-modify-write of a shared list).
STUDY_TAG = "study"  # the study that first trained the model
STUDY_TAG_PREFIX = "study."


def study_tag(study: str) -> str:
    """The tag that says a training belongs to ``study``."""
    return f"{STUDY_TAG_PREFIX}{study}"


def study_axis_tag(study: str, axis: str) -> str:
    """The tag of an axis value as ``study`` names it: a training two studies share may be one
    cell under two names (fig5's ``vfrozen_lmfull`` is the default ``align_then_finetune``)."""
    return f"study_axis.{study}.{axis}"


def axis_value(tags: dict[str, str], axis: str, study: str | None) -> str | None:
    """The training's value on ``axis`` as ``study`` names it (else as it was trained)."""
    named = tags.get(study_axis_tag(study, axis)) if study is not None else None
    return named if named is not None else tags.get(f"axis.{axis}")


def studies_of(tags: dict[str, str]) -> list[str]:
    """Every study a training run belongs to, from its tags (runs older than the per-study tags
    have only ``study``)."""
    found = {k.removeprefix(STUDY_TAG_PREFIX) for k in tags if k.startswith(STUDY_TAG_PREFIX)}
    if tags.get(STUDY_TAG):
        found.add(tags[STUDY_TAG])
    return sorted(found)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists are kept as one value."""
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: str(tree)[:MAX_PARAM_LENGTH]}


def git_sha(cwd: str | Path | None = None) -> str:
    """The commit of the working tree (``+dirty`` when it has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def process_tags() -> dict[str, str]:
    """Which process holds a run open (shown by ``msl-ablate status``)."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


class Tracker:
    """The MLflow client of one experiment, and the runs of the stage graph in it.

    Args:
        tracking: The ``tracking`` group.
    """

    def __init__(self, tracking: DictConfig):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking.tracking_uri
        self.experiment = tracking.experiment
        guard: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            # MLflow creates and migrates a new sqlite store on first use; two processes doing
            # it at once (a parallel sweep) fail, so the first one does it alone.
            guard = hold(db.with_name(f"{db.name}.lock"), "the MLflow store")
        with guard:
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = self.client.get_experiment_by_name(tracking.experiment)
            if experiment is None:
                self.experiment_id = self._create_experiment(tracking)
            else:
                self.experiment_id = experiment.experiment_id

    def _create_experiment(self, tracking: DictConfig) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(
                tracking.experiment, artifact_location=tracking.artifact_location
            )
        except MlflowException:
            # On a server, another job of the sweep may have created it a moment ago.
            experiment = self.client.get_experiment_by_name(tracking.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def search(self, kind: str, where: str = "") -> list[Any]:
        """Runs of a kind, newest first, with an extra MLflow filter (``tags.x = 'y'``)."""
        extra = f" and {where}" if where else ""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.kind = '{kind}'{extra}",
            order_by=["attributes.start_time DESC"],
            max_results=50_000,
        )

    def find(self, kind: str, key: str) -> Any | None:
        """The newest run of a kind with that key, whatever its status, or None."""
        found = self.search(kind, f"tags.{KEY_TAG[kind]} = '{key}'")
        return found[0] if found else None

    def finished_evaluations(self, training_key: str) -> dict[str, Any]:
        """The FINISHED evaluation runs of a training, by evaluation key."""
        done = self.search(EVALUATION, f"tags.training_key = '{training_key}' and "
                           "attributes.status = 'FINISHED'")  # fmt: skip
        return {run.data.tags[KEY_TAG[EVALUATION]]: run for run in done}

    @shielded  # a preemption signal waits until the write is done
    def open(
        self,
        kind: str,
        key: str,
        name: str,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
        parent: str | None = None,
    ) -> tuple[str, str | None]:
        """The run of ``(kind, key)``: the finished one, a reopened unfinished one, or a new one.

        Returns:
            ``(run_id, status it had)``; status None for a new run, ``FINISHED`` for a run
            returned as it is (nothing is written to it).
        """
        run = self.find(kind, key)
        if run is not None and run.info.status == "FINISHED":
            return run.info.run_id, "FINISHED"
        if run is not None:
            run_id, status = run.info.run_id, run.info.status
            resumes = int(run.data.tags.get("resumes", "0")) + 1
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(run_id, {"resumes": str(resumes), **process_tags()})
            if "failure" in run.data.tags:  # the reason it stopped last time
                self.client.delete_tag(run_id, "failure")
            log.info("MLflow %s run %s (%s) was %s: continuing it", kind, run_id, name, status)
            return run_id, status
        all_tags = {"kind": kind, KEY_TAG[kind]: key, **tags, **process_tags()}
        if parent is not None:
            all_tags[PARENT_TAG] = parent
        run_id = self.client.create_run(
            self.experiment_id, run_name=name, tags=all_tags
        ).info.run_id
        if params:
            self.log_params(run_id, params)
        log.info("MLflow %s run %s (%s) in %s", kind, run_id, name, self.tracking_uri)
        return run_id, None

    @shielded
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(batch), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=batch[i : i + MAX_PARAMS_PER_BATCH])

    @shielded
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        self._log_metric_batch(run_id, batch)

    @shielded
    def _log_metric_batch(self, run_id: str, batch: list[Any]) -> None:
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[i : i + MAX_METRICS_PER_BATCH])

    def copy_curves(self, source: str, dest: str, prefix: str) -> int:
        """Copy every metric history named ``<prefix>/...`` from one run to another.

        Returns:
            How many points were copied.
        """
        names = [k for k in self.client.get_run(source).data.metrics if k.startswith(f"{prefix}/")]
        points = [m for k in names for m in self.client.get_metric_history(source, k)]
        self._log_metric_batch(dest, points)
        return len(points)

    @shielded
    def log_artifacts(self, run_id: str, local_dir: str | Path, path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(local_dir), path)

    @shielded
    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    @shielded
    def finish(self, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
        """Close a run as ``FINISHED``, ``FAILED`` or ``KILLED`` (``failure`` tag: why)."""
        if reason is not None:
            self.client.set_tag(run_id, "failure", reason[:5000])
        self.client.set_terminated(run_id, status)


class StageMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger for one stage, writing into the training's open run.

    Pass ``prefix=<stage>``: metrics logged as ``train/loss`` (by the LitModule and Lightning's
    callbacks alike) land as ``<stage>/train/loss``. Lightning's logger closes the run when
    ``fit`` ends; the run spans every stage, so a run killed in stage 2 must not look
    FINISHED: ``Tracker.finish`` closes it.
    """

    LOGGER_JOIN_CHAR = "/"  # Lightning joins prefix and name with "-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_logged: tuple[int | None, set[str]] = (None, set())
        self._last_step: dict[str, int] = {}  # name -> last step the run already has

    def _already_logged(self, name: str, step: int | None) -> bool:
        """Whether the run has this name at this step from before: a stage resumed from a
        checkpoint recomputes the steps after it (the same samples, the same numbers), whose
        points the killed process had logged already."""
        if step is None:
            return False
        if name not in self._last_step:
            key = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{name}" if self._prefix else name
            history = self.experiment.get_metric_history(self.run_id, key)
            self._last_step[name] = max((m.step for m in history), default=-1)
        return step <= self._last_step[name]

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics, each name at most once per step in the run.

        ``StageCheckpoint`` sends a step's metrics before it saves, and Lightning sends them
        again after its hooks; a resumed stage sends again the steps its killed process had
        logged after the checkpoint. Either repeat would be a second point at the same step.
        """
        last_step, names = self._step_logged
        if step != last_step:
            names = set()
        fresh = {name: value for name, value in metrics.items()
                 if name not in names and not self._already_logged(name, step)}  # fmt: skip
        self._step_logged = (step, names | set(fresh))
        if fresh:
            with deferred_signals():  # a preemption never lands inside the store's write
                super().log_metrics(fresh, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        return None
