"""Structured-config schemas: types and allowed values of every group, checked by Hydra at start-up.

Registered in Hydra's ConfigStore as ``<group>/schema``; every option file lists its
group's schema first in its defaults, so a misspelt key or a wrong type fails when the
config is composed, before anything is built or downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from msl_ablate.models.lm import ChatTemplate, Tuning
from msl_ablate.models.vision.transforms import ResizeStrategy
from msl_ablate.training.strategy import Mode


@dataclass
class VisionConfig:
    _target_: str = MISSING
    name: str = MISSING
    checkpoint: str | None = None  # hub id or local folder; null: the tiny twin is the model
    model_class: str = MISSING
    image_size: int = 224
    feature_layer: int = -2
    drop_cls: bool = False
    resize: ResizeStrategy = ResizeStrategy.resize
    twin: Any = None  # `_target_` of a twin builder and its arguments (see models/zoo.py)


@dataclass
class LMConfig:
    _target_: str = MISSING
    name: str = MISSING
    checkpoint: str | None = None
    family: str = MISSING
    params_b: float = MISSING
    tuning: Tuning = Tuning.base
    chat_template: ChatTemplate = ChatTemplate.checkpoint
    torch_dtype: str = "float32"
    lora_target_modules: list[str] | None = None  # None: every linear layer but the head
    twin: Any = None


@dataclass
class ProjectorConfig:
    _target_: str = MISSING
    _partial_: bool = True
    name: str = MISSING
    depth: int = 2
    act: str = "gelu"


@dataclass
class ComponentStageConfig:
    mode: Mode = Mode.frozen
    lr: float = 0.0
    trainable_blocks: int = 0  # only for mode=partial


@dataclass
class LoraConfig:
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05


@dataclass
class StageConfig:
    name: str = MISSING  # align | finetune (equal to its key under strategy.stages)
    split: str = MISSING  # a key of data.files
    max_steps: int = MISSING
    batch_size: int = 32
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    vision: ComponentStageConfig = field(default_factory=ComponentStageConfig)
    projector: ComponentStageConfig = field(
        default_factory=lambda: ComponentStageConfig(Mode.full, 1e-3)
    )
    lm: ComponentStageConfig = field(default_factory=ComponentStageConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class StrategyConfig:
    name: str = MISSING
    stages: dict[str, StageConfig] = field(default_factory=dict)


@dataclass
class DataConfig:
    name: str = MISSING
    generator: Any = (
        None  # `_target_` + arguments of a dataset generator, or null for files on disk
    )
    root: str | None = None  # dataset folder when there is no generator
    files: dict[str, str] = field(default_factory=dict)  # split -> JSON file, relative to root
    image_dir: str = "."
    max_length: int = 256
    num_workers: int = 0


@dataclass
class TrainerConfig:
    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = 1
    precision: str = "32-true"
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    enable_progress_bar: bool = True
    enable_model_summary: bool = False
    num_sanity_val_steps: int = 0


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = MISSING
    experiment: str = "msl-ablate"
    artifact_location: str | None = None


@dataclass
class EvalConfig:
    split: str = "eval"
    batch_size: int = 64
    max_new_tokens: int = 8
    max_samples: int | None = None


@dataclass
class PathsConfig:
    root: str = "."
    cache_dir: str = "~/.cache/msl-ablate"
    data_dir: str = MISSING
    zoo_dir: str = MISSING
    output_dir: str = MISSING
    results_dir: str = MISSING


@dataclass
class TrainConfig:
    study: str = "adhoc"
    seed: int = 0
    offline_twins: bool = False  # load every checkpoint's tiny twin instead (offline proof)
    num_threads: int | None = None  # torch CPU threads; null: torch's default
    paths: PathsConfig = field(default_factory=PathsConfig)
    vision: VisionConfig = MISSING
    lm: LMConfig = MISSING
    projector: ProjectorConfig = MISSING
    strategy: StrategyConfig = MISSING
    data: DataConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)


GROUP_SCHEMAS = {
    "vision": VisionConfig,
    "lm": LMConfig,
    "projector": ProjectorConfig,
    "strategy": StrategyConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "tracking": TrackingConfig,
}


def register_schemas() -> None:
    """Store the root schema and one ``schema`` option per group in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name="schema", node=node)
