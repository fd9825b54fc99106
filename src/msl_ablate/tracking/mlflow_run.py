"""One MLflow run per experiment, reused by every stage: tags, params, config and metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

AXIS_GROUPS = ("vision", "lm", "projector", "strategy", "data")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
# MLflow's limits per log_batch call.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


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


class MlflowRun:
    """Opens and closes the MLflow run of one experiment, or logs to a finished one.

    Args:
        tracking: The ``tracking`` group.
        run_id: An existing run to log to (``msl-ablate evaluate``); None: ``start`` creates one.
    """

    def __init__(self, tracking: DictConfig, run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking.tracking_uri
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                tracking.experiment, artifact_location=tracking.artifact_location
            )
        else:
            self.experiment_id = experiment.experiment_id
        self.run_id = run_id

    def start(self, cfg: DictConfig, run_key: str, stage_keys: dict[str, str]) -> str:
        """Create the run with its tags, all config values as params and the config YAML."""
        tags = {
            "run_key": run_key,
            "study": cfg.study,
            "seed": str(cfg.seed),
            "git_sha": git_sha(),
            **{f"axis.{g}": cfg[g].name for g in AXIS_GROUPS},
            **{f"stage_key.{s}": k for s, k in stage_keys.items()},
        }
        name = (
            "-".join(cfg[g].name for g in ("vision", "lm", "projector", "strategy"))
            + f"-s{cfg.seed}"
        )
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        values = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
        params = [Param(k, v) for k, v in sorted(values.items())]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        self.client.log_text(self.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        log.info("MLflow run %s (%s) in %s", self.run_id, name, self.tracking_uri)
        return self.run_id

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + MAX_METRICS_PER_BATCH])

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Upload a folder's files (answer files, metrics) under ``artifact_path``."""
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """Close the run as ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


class StageMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger for one stage, writing into the experiment's open run.

    Pass ``prefix=<stage>``: metrics logged as ``train/loss`` (by the LitModule and Lightning's
    callbacks alike) land as ``<stage>/train/loss``. Lightning's logger closes the run when
    ``fit`` ends; the run spans every stage and the evaluation, so a run killed in stage 2
    must not look FINISHED. ``MlflowRun.finish`` closes it.
    """

    LOGGER_JOIN_CHAR = "/"  # Lightning joins prefix and name with "-"

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        return None
