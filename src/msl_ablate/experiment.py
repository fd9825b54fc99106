"""The stage loop of one experiment: build, train each stage, evaluate, track, store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.data.dataset import load_records
from msl_ablate.data.synthetic import majority_baseline
from msl_ablate.evaluation.exact_match import exact_match_scores
from msl_ablate.evaluation.generate import generate_answers
from msl_ablate.evaluation.suite_eval import EVAL_DIR, evaluate_suite
from msl_ablate.models.assemble import build_vlm
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.results import store
from msl_ablate.tracking.mlflow_run import MlflowRun, StageMLFlowLogger
from msl_ablate.tracking.run_key import run_key, stage_keys
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.strategy import apply_stage, load_trainable, save_trainable
from msl_ablate.utils.files import write_text_atomic
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

STAGE_CHECKPOINT = "trainable.safetensors"
# The resolved config, saved in the run folder: `msl-ablate evaluate` rebuilds the model from it.
RUN_CONFIG = "config.yaml"


def train_stage(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    stage: DictConfig,
    data_root: Path,
    stage_dir: Path,
    tracker: MlflowRun | None,
) -> Path:
    """Fit one stage (resuming from its last Lightning checkpoint) and save its trainable weights."""
    groups = apply_stage(vlm, stage)
    final = stage_dir / STAGE_CHECKPOINT
    if final.is_file():
        log.info("Stage %s already finished in %s; loading it", stage.name, final)
        load_trainable(vlm, final)
        return final
    datamodule = VLMDataModule(
        cfg.data, data_root, stage.split, vlm.lm.tokenizer, vlm.vision.image_transform,
        vlm.num_image_tokens, stage.batch_size, seed=cfg.seed,
    )  # fmt: skip
    module = VLMLitModule(vlm, groups, stage)
    logger = (
        StageMLFlowLogger(tracking_uri=tracker.tracking_uri, run_id=tracker.run_id, log_model=False)
        if tracker is not None
        else False
    )
    ckpt_dir = stage_dir / "checkpoints"
    checkpointing = ModelCheckpoint(
        dirpath=ckpt_dir, save_last=True, every_n_train_steps=max(50, stage.max_steps // 4)
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=stage.max_steps,
        logger=logger,
        callbacks=[checkpointing],
        default_root_dir=stage_dir,
    )
    last = ckpt_dir / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    # Lightning returns normally after a graceful interrupt: never mark such a stage finished.
    if trainer.global_step < stage.max_steps:
        raise RuntimeError(
            f"stage {stage.name} stopped at step {trainer.global_step} of {stage.max_steps}; "
            f"re-run the same command to resume from {last}"
        )
    return save_trainable(vlm, final)


def evaluate(
    cfg: DictConfig, vlm: VisionLanguageModel, data_root: Path, run_dir: Path, prefix: str
) -> dict[str, float]:
    """Greedy answers on the held-out split, exact match per question type and the majority baseline."""
    datamodule = VLMDataModule(
        cfg.data, data_root, cfg.eval.split, vlm.lm.tokenizer, vlm.vision.image_transform,
        vlm.num_image_tokens, cfg.eval.batch_size,
    )  # fmt: skip
    dataset = datamodule.make_dataset(cfg.eval.split, for_generation=True)
    if cfg.eval.max_samples:
        dataset.records = dataset.records[: cfg.eval.max_samples]
    answers = generate_answers(vlm, dataset, cfg.eval.batch_size, cfg.eval.max_new_tokens)
    records = dataset.records
    lines = [
        json.dumps({"question_id": r["id"], "text": answers[r["id"]], "answer": r["answer"]})
        for r in records
    ]
    write_text_atomic(run_dir / "eval" / "answers.jsonl", "\n".join(lines) + "\n")
    scores = exact_match_scores(
        [answers[r["id"]] for r in records],
        [r["answer"] for r in records],
        [r["question_type"] for r in records],
    )
    last_split = list(cfg.strategy.stages.values())[-1].split
    train_records = load_records(
        data_root / cfg.data.files[last_split], data_root / cfg.data.image_dir
    )
    baseline = majority_baseline([r for r in train_records if "question_type" in r], records)
    metrics = {}
    for name, table in (("exact_match", scores), ("majority_baseline", baseline)):
        for qtype, value in table.items():
            metrics[f"{prefix}/{name}" + ("" if qtype == "overall" else f"/{qtype}")] = value
    return metrics


def _report(metrics: dict[str, float]) -> str:
    model = {
        k.rsplit("/exact_match", 1)[1].lstrip("/") or "overall": v
        for k, v in metrics.items()
        if "/exact_match" in k
    }
    base = {
        k.rsplit("/majority_baseline", 1)[1].lstrip("/") or "overall": v
        for k, v in metrics.items()
        if "/majority_baseline" in k
    }
    rows = [f"{'question type':<14} {'model':>7} {'majority':>9}"]
    rows += [
        f"{t:<14} {model[t]:>7.1f} {base.get(t, float('nan')):>9.1f}"
        for t in sorted(model, key=lambda t: (t == "overall", t))
    ]
    return "\n".join(rows)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage of the strategy, then evaluate, log to MLflow and update the results store.

    Args:
        cfg: The composed, checked root config.

    Returns:
        ``{"run_key", "mlflow_run_id", "metrics", "row"}``.
    """
    key, stages_keys = run_key(cfg), stage_keys(cfg)
    run_dir = Path(cfg.paths.output_dir) / "runs" / key
    log.info("Run key %s -> %s", key, run_dir)
    write_text_atomic(run_dir / RUN_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    L.seed_everything(cfg.seed, workers=True)
    vlm = build_vlm(cfg)
    data_root = resolve_data_root(cfg.data, cfg.paths.data_dir)
    tracker = MlflowRun(cfg.tracking) if cfg.tracking.enabled else None
    if tracker is not None:
        tracker.start(cfg, key, stages_keys)
    try:
        previous: Path | None = None
        for name, stage in cfg.strategy.stages.items():
            if previous is not None:
                load_trainable(vlm, previous)  # the checkpoint path is passed on explicitly
            if tracker is not None:
                tracker.set_tag("stage", name)  # where a failed run stopped
            previous = train_stage(cfg, vlm, stage, data_root, run_dir / name, tracker)
            if tracker is not None:
                tracker.set_tag(f"checkpoint.{name}", str(previous))
        last_stage = list(cfg.strategy.stages)[-1]
        if tracker is not None:
            tracker.set_tag("stage", "eval")
        metrics = evaluate(cfg, vlm, data_root, run_dir, prefix=f"{last_stage}/eval")
        log.info("Held-out %s split, exact match %%:\n%s", cfg.eval.split, _report(metrics))
        metrics |= evaluate_suite(cfg, vlm, run_dir, last_stage)
    except BaseException as err:
        if tracker is not None:
            tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    result: dict[str, Any] = {
        "run_key": key,
        "metrics": metrics,
        "mlflow_run_id": None,
        "row": None,
    }
    if tracker is not None:
        tracker.log_metrics(metrics)
        # Answer files (exact match and every benchmark) and benchmark metrics.
        tracker.client.log_artifacts(tracker.run_id, str(run_dir / EVAL_DIR), EVAL_DIR)
        tracker.set_tag("stage", "done")
        tracker.finish("FINISHED")
        run = tracker.client.get_run(tracker.run_id)
        result["row"] = store.row_from_run(run)
        result["mlflow_run_id"] = tracker.run_id
        table = store.upsert(Path(cfg.paths.results_dir) / store.STORE_FILE, result["row"])
        log.info(
            "Results store %s:\n%s",
            Path(cfg.paths.results_dir) / store.STORE_FILE,
            store.summary(table),
        )
    return result
