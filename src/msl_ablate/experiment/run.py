"""One run: build the model, run the stages, evaluate, record in MLflow and the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from msl_ablate.evaluation.run_benchmarks import benchmark_specs, evaluate_benchmarks
from msl_ablate.experiment.layout import EVAL_DIR, RunLayout
from msl_ablate.experiment.stages import run_stages
from msl_ablate.models.assemble import build_vlm, max_sequence_length
from msl_ablate.results import store
from msl_ablate.tracking.mlflow_run import MlflowRun
from msl_ablate.tracking.run_key import run_key, stage_keys
from msl_ablate.utils.files import write_text_atomic
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def heldout_report(metrics: dict[str, float], prefix: str) -> str:
    """Exact match and the majority baseline per question type, from the held-out metrics."""
    model = {k.removeprefix(f"{prefix}/exact_match"): v for k, v in metrics.items()
             if k.startswith(f"{prefix}/exact_match")}  # fmt: skip
    rows = [f"{'question type':<14} {'model':>7} {'majority':>9}"]
    for suffix in sorted(model, key=lambda s: (s == "", s)):
        base = metrics.get(f"{prefix}/majority_baseline{suffix}", float("nan"))
        rows.append(f"{suffix.lstrip('/') or 'overall':<14} {model[suffix]:>7.1f} {base:>9.1f}")
    return "\n".join(rows)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage of the strategy, then evaluate, log to MLflow and update the results store.

    Args:
        cfg: The composed, checked root config (absolute ``paths``).

    Returns:
        ``{"run_key", "mlflow_run_id", "metrics", "row"}``.
    """
    key = run_key(cfg)
    layout = RunLayout.of(cfg.paths.output_dir, key)
    log.info("Run key %s -> %s", key, layout.root)
    write_text_atomic(layout.config, OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    L.seed_everything(cfg.seed, workers=True)
    vlm = build_vlm(cfg)
    # Before any training: sequence budget, evaluation files (held-out answers, the suite).
    max_length = max_sequence_length(cfg, vlm)
    specs = benchmark_specs(cfg)
    tracker = MlflowRun(cfg.tracking) if cfg.tracking.enabled else None
    if tracker is not None:
        tracker.start(cfg, key, stage_keys(cfg))
    last_stage = list(cfg.strategy.stages)[-1]
    try:
        run_stages(cfg, vlm, layout, max_length, tracker)
        if tracker is not None:
            tracker.set_tag("stage", "eval")
        metrics = evaluate_benchmarks(cfg, vlm, specs, layout.eval_dir, last_stage)
    except BaseException as err:
        if tracker is not None:
            tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    if cfg.eval.split is not None:
        prefix = f"{last_stage}/{cfg.eval.split}"
        report = heldout_report(metrics, prefix)
        log.info("Held-out %s split, exact match %%:\n%s", cfg.eval.split, report)
    result: dict[str, Any] = {
        "run_key": key,
        "metrics": metrics,
        "mlflow_run_id": None,
        "row": None,
    }
    if tracker is not None:
        tracker.log_metrics(metrics)
        if layout.eval_dir.is_dir():
            tracker.log_artifacts(layout.eval_dir, EVAL_DIR)  # answer files and metrics.json
        tracker.set_tag("stage", "done")
        tracker.finish("FINISHED")
        result["mlflow_run_id"] = tracker.run_id
        result["row"] = store.row_from_run(tracker.client.get_run(tracker.run_id))
        path = Path(cfg.paths.results_dir) / store.STORE_FILE
        log.info("Results store %s:\n%s", path, store.summary(store.upsert(path, result["row"])))
    return result
