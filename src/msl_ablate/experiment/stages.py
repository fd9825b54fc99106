"""The stage loop: each stage of the strategy is found by its key and reused, or trained once.

``train`` and ``evaluate`` share it (``train=False`` replays finished stages only). Each stage's
trainability is applied in order, so LoRA wrapping happens where the stage did it and the saved
keys exist; then the stage's ``trainable.safetensors`` is loaded from ``stages/<stage_key>/``, or
the stage is fit under that key's lock: two processes that need the same stage train it once,
the second waits and loads what the first wrote.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ThroughputMonitor
from omegaconf import DictConfig

from msl_ablate.config.batching import accumulation
from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.data.sampler import TRAINER_KWARGS
from msl_ablate.experiment.features import fill_feature_cache, stage_feature_cache
from msl_ablate.experiment.layout import StageLayout
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.tracking.mlflow_run import StageMLFlowLogger, Tracker
from msl_ablate.training.checkpointing import StageCheckpoint, resume_path
from msl_ablate.training.cost import StageCost
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.progress import StageProgressBar
from msl_ablate.training.sharding import is_sharded, lightning_strategy, trainable_state
from msl_ablate.training.strategy import apply_stage, load_trainable, save_state
from msl_ablate.utils.files import read_json, write_json_atomic
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger, is_rank_zero

log = get_logger(__name__)


@dataclass(frozen=True)
class StageOutcome:
    """What the loop did with one stage.

    Attributes:
        name: The stage (``align``, ``finetune``).
        layout: Its files (``layout.key`` is the stage key).
        trained: Fit by this process; False: reused, finished earlier or by another run.
        record: The stage's ``stage.json`` (who trained it, steps, wall time, last loss).
    """

    name: str
    layout: StageLayout
    trained: bool
    record: dict[str, Any]


def fit_stage(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    stage: DictConfig,
    param_groups: list[dict],
    layout: StageLayout,
    max_length: int,
    logger: StageMLFlowLogger | bool,
    callbacks: list[L.Callback] | None = None,
) -> dict[str, Any]:
    """Fit one stage, resuming from its newest loadable checkpoint.

    ``callbacks`` run after the stage's own (``msl-ablate bench`` times steps with one).

    Returns:
        ``{"steps", "wall_s", "loss", "cost"}`` of this fit (``cost``: ``StageCost.summary``,
        also logged as ``<stage>/cost/<name>``).

    Raises:
        RuntimeError: The stage stopped before ``max_steps`` (a graceful interrupt).
        NonFiniteLossError: The loss became NaN or infinite.
    """
    features = stage_feature_cache(cfg, stage.name)
    datamodule = VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), stage.split,
        vlm.lm.tokenizer, vlm.vision.image_transform, vlm.num_image_tokens, max_length,
        stage.batch_size, seed=cfg.seed, group_by_length=stage.group_by_length,
        group_by_modality=stage.group_by_modality,
        features=features,
        token_cache=Path(cfg.paths.cache_dir) if cfg.data.token_cache else None,
    )  # fmt: skip
    if features is not None:  # the tower is frozen: its features come from the cache
        datamodule.setup("fit")
        on_gpu = str(cfg.trainer.accelerator) in ("gpu", "cuda") and torch.cuda.is_available()
        fill_feature_cache(features, vlm.vision, datamodule.train_set.image_paths(),
                           cfg.data.feature_cache.max_gb, device="cuda" if on_gpu else None)  # fmt: skip
    own: list[L.Callback] = [
        ThroughputMonitor(
            batch_size_fn=lambda batch: batch["input_ids"].shape[0],
            # "items" are the real tokens (text and image, padding not counted): tokens/s.
            length_fn=lambda batch: int(batch["attention_mask"].sum()),
            window_size=min(10, max(2, stage.max_steps)),
        ),
        cost := StageCost(),
        # After the throughput monitor, so a step's rates are logged before its checkpoint.
        StageCheckpoint(
            layout.resume_dir, cfg.checkpoint.every_minutes, cfg.checkpoint.every_steps
        ),
    ]
    if cfg.trainer.enable_progress_bar:
        own.append(StageProgressBar(stage.name))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=stage.max_steps,
        logger=logger,
        callbacks=own + (callbacks or []),
        default_root_dir=layout.root,
        # StageCheckpoint saves the resumable state; Lightning's own would add a full copy.
        enable_checkpointing=False,
        strategy=lightning_strategy(cfg.trainer.strategy, shard_blocks(cfg)),
        **TRAINER_KWARGS,  # the sampler shards positions over ranks itself (data/sampler.py)
    )
    # The stage's global batch on however many processes the trainer runs (checked here too:
    # `devices: auto` is counted only now).
    trainer.accumulate_grad_batches = accumulation(stage, trainer.world_size)
    ckpt = resume_path(layout.resume_dir)
    if ckpt is not None:
        log.info("Stage %s resumes from %s", stage.name, ckpt)
    module = VLMLitModule(vlm, param_groups, stage)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt))
    # Lightning returns normally after a graceful interrupt: never mark such a stage finished.
    if trainer.global_step < stage.max_steps:
        raise RuntimeError(
            f"stage {stage.name} stopped at step {trainer.global_step} of {stage.max_steps}; "
            f"re-run the same command to resume from {layout.resume_dir}"
        )
    loss = trainer.callback_metrics.get("train/loss")
    summary = cost.summary()
    data = {"skipped_records": len(datamodule.skipped), "truncated_records": cost.truncated}
    if cost.truncated:
        log.warning("Stage %s: %d samples were cut at data.max_length=%d (data.too_long=truncate)",
                    stage.name, cost.truncated, max_length)  # fmt: skip
    if isinstance(logger, StageMLFlowLogger):
        logger.log_metrics({**{f"cost/{name}": value for name, value in summary.items()},
                            **{f"data/{name}": value for name, value in data.items()}},
                           step=trainer.global_step)  # fmt: skip
        if datamodule.skipped and is_rank_zero():  # which records, and why (data.on_error=skip)
            logger.experiment.log_text(logger.run_id, "\n".join(map(str, datamodule.skipped)),
                                       f"data/{stage.name}_skipped_records.txt")  # fmt: skip
    return {
        "steps": trainer.global_step,
        "wall_s": round(time.perf_counter() - start, 3),
        "loss": None if loss is None else float(loss),
        "cost": summary,
        "data": data,
    }


def shard_blocks(cfg: DictConfig) -> dict[str, list[str] | None]:
    """The block classes that FSDP shards one by one, per component (``<component>.shard_blocks``)."""
    return {name: cfg[name].get("shard_blocks") for name in ("lm", "vision")}


def _unsharded(cfg: DictConfig, keys: dict[str, str], through: str) -> VisionLanguageModel:
    """A fresh model brought through stage ``through`` from the stages' files.

    FSDP leaves the trained model sharded over the ranks; every rank rebuilds it whole, as a
    second run of the same config would, once rank zero has written the stage's weights.
    """
    import torch.distributed as dist

    from msl_ablate.models.assemble import build_vlm

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank zero has written the stage's weights
    with torch.random.fork_rng():  # the run's random stream goes on as without the rebuild
        torch.manual_seed(cfg.seed)
        vlm = build_vlm(cfg)
    for name, stage in cfg.strategy.stages.items():
        apply_stage(vlm, stage)
        load_trainable(vlm, StageLayout.of(cfg.paths.output_dir, keys[name]).weights)
        if name == through:
            return vlm
    raise KeyError(f"strategy.stages has no stage {through!r}")


def _train_or_reuse(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    stage: DictConfig,
    param_groups: list[dict],
    layout: StageLayout,
    inputs: dict[str, Any],
    max_length: int,
    tracker: Tracker | None,
    run_id: str | None,
) -> bool:
    """Fit the stage under its key's lock unless it is (or becomes) finished; True if fit here."""
    with hold(layout.lock, f"stage {stage.name} {layout.key}"):
        if layout.finished:  # another process finished it while this one waited
            return False
        write_json_atomic(layout.inputs, inputs)
        logger: StageMLFlowLogger | bool = False
        if tracker is not None:
            logger = StageMLFlowLogger(
                tracking_uri=tracker.tracking_uri, run_id=run_id, log_model=False, prefix=stage.name
            )
        fit = fit_stage(cfg, vlm, stage, param_groups, layout, max_length, logger)
        # A sharded model's weights are gathered from every rank: all of them take part.
        state = trainable_state(vlm) if is_sharded(vlm) or is_rank_zero() else {}
        if not is_rank_zero():  # rank zero alone writes; the other ranks go on to the next stage
            return True
        save_state(state, layout.weights)
        record = {
            "stage": stage.name,
            "stage_key": layout.key,
            "tracking_uri": None if tracker is None else tracker.tracking_uri,
            "mlflow_run_id": run_id,  # the training run that holds this stage's curves
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **fit,
        }
        write_json_atomic(layout.record, record)  # last: the stage is finished
        # The resumable checkpoints (weights + optimizer state) are not needed any more.
        shutil.rmtree(layout.resume_dir, ignore_errors=True)
    return True


def run_stages(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    keys: dict[str, str],
    inputs: dict[str, dict[str, Any]],
    max_length: int,
    tracker: Tracker | None = None,
    run_id: str | None = None,
    train: bool = True,
) -> tuple[VisionLanguageModel, list[StageOutcome]]:
    """Bring ``vlm`` to the end of the strategy, stage by stage.

    Args:
        cfg: The root config.
        vlm: The freshly built model.
        keys: ``experiment.keys.stage_keys(cfg)``.
        inputs: ``experiment.keys.stage_inputs(cfg)`` (saved beside each trained stage).
        max_length: Longest training sequence (``models.assemble.max_sequence_length``).
        tracker: MLflow; a reused stage's curves are copied into ``run_id``.
        run_id: The training run (``stage`` tag, curves).
        train: Fit unfinished stages; False: every stage must be finished.

    Returns:
        The model at the end of the strategy (``vlm`` itself, or after FSDP a rebuilt whole
        one) and what happened to each stage.

    Raises:
        FileNotFoundError: ``train=False`` and a stage is not finished.
    """
    outcomes = []
    for name, stage in cfg.strategy.stages.items():
        layout = StageLayout.of(cfg.paths.output_dir, keys[name])
        if tracker is not None:
            tracker.set_tags(run_id, {"stage": name})  # where a failed run stopped
        param_groups = apply_stage(vlm, stage)
        trained = False
        if not layout.finished and not train:
            raise FileNotFoundError(
                f"stage {name} ({layout.key}) is not finished: {layout.record} does not exist "
                f"(run `msl-ablate train` with the run's config to finish it)"
            )
        if not layout.finished:
            trained = _train_or_reuse(
                cfg, vlm, stage, param_groups, layout, inputs[name], max_length, tracker, run_id
            )
            if is_sharded(vlm):
                vlm = _unsharded(cfg, keys, name)
        if not trained:
            log.info("Stage %s (%s) is finished in %s: reusing it", name, layout.key, layout.root)
            load_trainable(vlm, layout.weights)
        record = read_json(layout.record) if layout.record.is_file() else {}
        outcomes.append(StageOutcome(name, layout, trained, record))
        if tracker is not None:
            _record_stage(tracker, run_id, name, layout, trained, record)
    return vlm, outcomes


def _record_stage(
    tracker: Tracker,
    run_id: str,
    name: str,
    layout: StageLayout,
    trained: bool,
    record: dict[str, Any],
) -> None:
    """Tag where the stage is; copy a reused stage's curves into this training run once."""
    source = record.get("mlflow_run_id")
    tracker.set_tags(
        run_id,
        {
            f"stage_dir.{name}": str(layout.root),
            f"stage_reused.{name}": str(not trained and source != run_id).lower(),
            f"stage_source.{name}": source or "none",
        },
    )
    has_curves = any(k.startswith(f"{name}/") for k in tracker.client.get_run(run_id).data.metrics)
    if (
        trained
        or has_curves
        or source is None
        or record.get("tracking_uri") != tracker.tracking_uri
    ):
        return
    n = tracker.copy_curves(source, run_id, name)
    log.info("Stage %s: copied %d curve points from MLflow run %s", name, n, source)
