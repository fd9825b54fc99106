"""The stage loop: apply each stage of the strategy in order, reuse it if finished, else fit it.

``train`` and ``evaluate`` share it (``train=False`` replays finished stages only): each stage's
trainability is applied in order, so LoRA wrapping happens where the stage did it and the
saved keys exist, then its ``trainable.safetensors`` is loaded or trained.
"""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
from omegaconf import DictConfig

from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.experiment.layout import RunLayout
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.tracking.mlflow_run import MlflowRun, StageMLFlowLogger
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.progress import StageProgressBar
from msl_ablate.training.strategy import apply_stage, load_trainable, save_trainable
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def fit_stage(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    stage: DictConfig,
    param_groups: list[dict],
    layout: RunLayout,
    max_length: int,
    tracker: MlflowRun | None,
) -> None:
    """Fit one stage, resuming from its last Lightning checkpoint.

    Raises:
        RuntimeError: The stage stopped before ``max_steps`` (a graceful interrupt).
    """
    datamodule = VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), stage.split,
        vlm.lm.tokenizer, vlm.vision.image_transform, vlm.num_image_tokens, max_length,
        stage.batch_size, seed=cfg.seed,
    )  # fmt: skip
    logger = (
        StageMLFlowLogger(
            tracking_uri=tracker.tracking_uri,
            run_id=tracker.run_id,
            log_model=False,
            prefix=stage.name,
        )
        if tracker is not None
        else False
    )
    ckpt_dir = layout.resume_dir(stage.name)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, save_last=True, every_n_train_steps=max(50, stage.max_steps // 4)
        ),
        ThroughputMonitor(
            batch_size_fn=lambda batch: batch["input_ids"].shape[0],
            window_size=min(10, max(2, stage.max_steps)),
        ),
    ]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StageProgressBar(stage.name))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=stage.max_steps,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=layout.stage_dir(stage.name),
    )
    last = ckpt_dir / "last.ckpt"
    module = VLMLitModule(vlm, param_groups, stage)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    # Lightning returns normally after a graceful interrupt: never mark such a stage finished.
    if trainer.global_step < stage.max_steps:
        raise RuntimeError(
            f"stage {stage.name} stopped at step {trainer.global_step} of {stage.max_steps}; "
            f"re-run the same command to resume from {last}"
        )


def run_stages(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    layout: RunLayout,
    max_length: int,
    tracker: MlflowRun | None = None,
    train: bool = True,
) -> None:
    """Bring ``vlm`` to the end of the strategy, stage by stage.

    Args:
        cfg: The root config.
        vlm: The freshly built model.
        layout: The run's files.
        max_length: Longest training sequence (``models.assemble.max_sequence_length``).
        tracker: The run's MLflow run (``stage`` and ``checkpoint.<stage>`` tags, curves).
        train: Fit unfinished stages; False: every stage must be finished.

    Raises:
        FileNotFoundError: ``train=False`` and a stage has no finished checkpoint.
    """
    for name, stage in cfg.strategy.stages.items():
        if tracker is not None:
            tracker.set_tag("stage", name)  # where a failed run stopped
        param_groups = apply_stage(vlm, stage)
        final = layout.stage_checkpoint(name)
        if final.is_file():
            log.info("Stage %s already finished in %s; loading it", name, final)
            load_trainable(vlm, final)
        elif not train:
            raise FileNotFoundError(
                f"stage {name} of run {layout.root.name} is not finished: {final} does not "
                f"exist (run `msl-ablate train` with the run's config to finish it)"
            )
        else:
            fit_stage(cfg, vlm, stage, param_groups, layout, max_length, tracker)
            save_trainable(vlm, final)
        if tracker is not None:
            tracker.set_tag(f"checkpoint.{name}", str(final))
