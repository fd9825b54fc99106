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

from msl_ablate.config.enums import ChatTemplate, Mode, QuestionFormat, ResizeStrategy, Tuning
from msl_ablate.config.resolvers import register_resolvers


@dataclass
class VisionConfig:
    """What every vision option has, whatever its backend (``models/vision/base.py``)."""

    _target_: str = MISSING  # the backend's builder
    name: str = MISSING
    checkpoint: str | None = None  # hub id, tag or local folder; null: the tiny twin is the model
    image_size: int = 224
    feature_layer: int = -2  # hidden-state index as in transformers: -2 = second-to-last block
    drop_cls: bool = False  # drop the prefix tokens (CLS and any registers)
    resize: ResizeStrategy = ResizeStrategy.resize
    twin: Any = None  # `_target_` of a twin builder and its arguments (see models/zoo.py)
    # Size of the real checkpoint, for `msl-ablate plan`'s FLOPs estimate when its config.json
    # is not at hand (models/size.py); null: unknown.
    params_b: float | None = None
    patch_size: int | None = None
    # trainer.strategy=fsdp: the tower's block classes, each sharded as one unit (FSDP's
    # auto-wrap policy); null: the transformers model's `_no_split_modules`, else none.
    shard_blocks: list[str] | None = None


@dataclass
class TransformersVisionConfig(VisionConfig):
    """A transformers vision tower (``models/vision/hf.py``)."""

    model_class: str = MISSING  # dotted transformers class, also used by the twin
    num_prefix_tokens: int | None = None  # CLS + registers; null: 1 if drop_cls else 0


@dataclass
class TimmVisionConfig(VisionConfig):
    """A timm ViT (``models/vision/timm.py``); ``checkpoint`` is the timm name with its tag."""

    model_class: str = MISSING  # the class timm must build (checked)
    num_prefix_tokens: int | None = None  # checked against timm's count; null: timm's


@dataclass
class OpenClipVisionConfig(VisionConfig):
    """An open_clip image tower (``models/vision/open_clip.py``); ``checkpoint`` is its tag."""

    model_name: str = MISSING  # open_clip architecture, e.g. ViT-B-16
    model_class: str = MISSING  # the class of model.visual (checked)


@dataclass
class FusedVisionConfig:
    """Several encoders on one image, features concatenated per patch (``models/vision/fused.py``).

    ``encoders`` lists full vision options (each with its own ``_target_``, ``checkpoint`` and
    ``twin``); ``image_size`` and ``resize`` are shared, ``feature_layer`` and ``drop_cls`` are
    defaults that an encoder may set for itself.
    """

    _target_: str = MISSING
    _recursive_: bool = False  # the fused builder builds its encoders itself
    name: str = MISSING
    image_size: int = 224
    feature_layer: int = -2
    drop_cls: bool = True
    resize: ResizeStrategy = ResizeStrategy.resize
    encoders: list[Any] = field(default_factory=list)


@dataclass
class LMConfig:
    _target_: str = MISSING
    name: str = MISSING
    checkpoint: str | None = None  # hub id or local folder; null: the tiny twin is the model
    model_class: str = MISSING  # dotted transformers class, also used by the twin
    family: str = MISSING
    params_b: float = MISSING
    tuning: Tuning = Tuning.base
    chat_template: ChatTemplate = ChatTemplate.checkpoint
    torch_dtype: str = "float32"
    lora_target_modules: list[str] | None = None  # None: every linear layer but the head
    # A GGUF file inside `checkpoint` (hub repo or folder) to load instead of its safetensors:
    # transformers dequantizes it (needs the `gguf` package). Ignored when the twin is the model.
    gguf_file: str | None = None
    # transformers' attention kernel: sdpa | eager | flash_attention_2 (flash-attn package);
    # null: transformers' default (SDPA: a flash kernel where the GPU has one).
    attn_implementation: str | None = None
    # trainer.strategy=fsdp: the decoder block classes, each sharded as one unit (FSDP's
    # auto-wrap policy); null: the transformers model's `_no_split_modules`.
    shard_blocks: list[str] | None = None
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
    lr: float = 0.0  # must be > 0 unless mode=frozen
    trainable_blocks: int = 0  # vision mode=partial only: how many of the last blocks train


@dataclass
class LoraConfig:
    """PEFT LoRA settings of a stage (Mipha/LLaVA: r=64, alpha=16, dropout 0.05).

    Used only when the stage's ``lm.mode`` is ``lora`` or ``qlora``; on any other stage these
    must stay at their defaults, so a LoRA setting that would silently do nothing is an error
    (``config/checks.py``).
    """

    r: int = 64
    alpha: int = 16
    dropout: float = 0.05


@dataclass
class OptimizerConfig:
    """A partial torch optimizer; the stage's parameter groups (one lr per component) fill it in."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    # torch's one-kernel AdamW (GPU, or CPU on torch >= 2.4); null: torch's choice (foreach).
    fused: bool | None = None


@dataclass
class SchedulerConfig:
    """A partial LR schedule, called with ``(optimizer, num_warmup_steps, num_training_steps)``."""

    _target_: str = "transformers.get_cosine_schedule_with_warmup"
    _partial_: bool = True


@dataclass
class StageConfig:
    """One training stage. Defaults are AdamW's; the reference recipe's values are spelled out
    in ``conf/strategy/align_then_finetune.yaml``, which every strategy preset builds on."""

    name: str = MISSING  # align, finetune, ... (equal to its key under strategy.stages)
    split: str = MISSING  # a key of data.files
    max_steps: int = MISSING
    batch_size: int = 32  # samples per forward pass on each device
    # Samples per optimizer step over all devices; null: batch_size x devices. Set, gradient
    # accumulation makes up the rest (config/batching.py).
    global_batch_size: int | None = None
    # Batches of records of similar length (less padding), in a random order of batches.
    group_by_length: bool = False
    # With group_by_length: image and text-only records in steps of their own (LLaVA-1.5's
    # group_by_modality_length; data/sampler.py).
    group_by_modality: bool = False
    # Compute each step's batch in up to this many parts of similar length: the same samples,
    # loss and gradient with less padding (training/micro_batches.py); 1 computes it whole.
    split_by_length: int = 1
    # Recompute the LM's (and a trained transformers tower's) activations in backward instead
    # of keeping them: less memory, about a third more compute; the same loss and gradient.
    gradient_checkpointing: bool = False
    # torch.compile the LM for this stage (GPU; compiling takes minutes, shapes vary by batch).
    compile: bool = False
    warmup_ratio: float = 0.03  # num_warmup_steps = int(warmup_ratio * max_steps)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    vision: ComponentStageConfig = field(default_factory=ComponentStageConfig)
    projector: ComponentStageConfig = field(
        default_factory=lambda: ComponentStageConfig(Mode.full, 1e-3)
    )
    lm: ComponentStageConfig = field(default_factory=ComponentStageConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class StrategyConfig:
    name: str = MISSING
    stages: dict[str, StageConfig] = field(default_factory=dict)  # run in this order
    # The stages' run order where it is not the order above: a preset that adds a stage between
    # two others needs it, since a merge appends new keys (conf/preset/demo.yaml's read stage).
    order: list[str] | None = None


@dataclass
class FeatureCacheConfig:
    """Frozen vision features computed once per (encoder, image) and read from disk
    (``experiment/features.py``): in stages whose tower is frozen, and was in every stage before."""

    enabled: bool = False
    max_gb: float = 20.0  # every encoder's cache together; the least recently used go first
    dir: str | None = None  # where; null: <paths.cache_dir>/features (e.g. a node's local disk)


@dataclass
class DataConfig:
    name: str = MISSING
    generator: Any = (
        None  # `_target_` + arguments of a dataset generator, or null for files on disk
    )
    root: str | None = None  # dataset folder when there is no generator
    files: dict[str, str] = field(default_factory=dict)  # split -> JSON file, relative to root
    image_dir: str = "."
    # split -> its image folder relative to root, where it is not image_dir (LLaVA's pretraining
    # images and its 665k mix's live in different folders).
    image_dirs: dict[str, str] = field(default_factory=dict)
    # Records with errors (malformed, missing or misnamed images: data/records.py): `error`
    # refuses to train, naming them; `skip` trains without them and logs their count and ids.
    on_error: str = "error"
    # A record longer than max_length: `error` names it; `truncate` cuts its text (never its
    # image tokens), as LLaVA's tokenizer does, and counts the cut records.
    too_long: str = "error"
    # Longest training sequence; null: the image tokens of one image + max_text_length.
    max_length: int | None = None
    max_text_length: int = 512  # text tokens per sample when max_length is null
    num_workers: int = 0
    # Tokenize each data file once per tokenizer into paths.cache_dir/tokens (data/token_cache.py).
    token_cache: bool = True
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)


@dataclass
class TrainerConfig:
    _target_: str = "lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    # auto, ddp, ... (Lightning's) or fsdp (FSDP2 over every rank: training/sharding.py)
    strategy: Any = "auto"
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
class BenchmarkConfig:
    """One benchmark of ``eval.suite``; paths are relative to the suite root (or absolute)."""

    scorer: str | None = None  # a key of SCORERS; null: no local metric (MM-Vet, export only)
    questions: str = MISSING  # the question file, laid out as `format` says
    format: QuestionFormat = QuestionFormat.questions
    image_dir: str = MISSING
    annotations: str | None = None  # the official annotation file or folder the scorer reads
    prompt_suffix: str = ""  # appended on its own line, e.g. LLaVA's answer-format instruction
    max_new_tokens: int = 8
    options: dict[str, Any] = field(default_factory=dict)  # scorer options, e.g. {split: test}
    export: str | None = None  # also write answers for an external grader (mmvet)
    # The question ids name an image and repeat (LLaVA's MME and TextVQA files): each question
    # is asked on its own; the scorer tells the answers apart by their prompt.
    repeated_ids: bool = False


@dataclass
class SuiteConfig:
    """The benchmark files (``conf/benchmarks/``): generated, or on disk under ``root``."""

    name: str = "none"
    generator: Any = None  # `_target_` + arguments of a suite generator, or null for files
    root: str | None = None  # suite folder when there is no generator
    benchmarks: dict[str, BenchmarkConfig] = field(default_factory=dict)


@dataclass
class EvalConfig:
    split: str | None = "eval"  # held-out split of data.files scored by exact match; null: none
    batch_size: int = 64
    max_new_tokens: int = 8
    max_samples: int | None = None
    benchmarks: list[str] = field(default_factory=list)  # keys of eval.suite.benchmarks to run
    max_length: int | None = None  # longest benchmark prompt; null: the LM's context length
    suite: SuiteConfig = field(default_factory=SuiteConfig)


@dataclass
class CheckpointConfig:
    """When a stage writes its resume checkpoint (``training/checkpointing.py``): whichever of
    the two comes first; null turns a trigger off, at least one must stay on."""

    every_minutes: float | None = 10.0  # wall time between saves
    every_steps: int | None = None  # save when global_step is a multiple of it


@dataclass
class ZooConfig:
    """The pretrained tiny zoo (``conf/zoo``, ``msl-ablate zoo build``)."""

    # Cap on every zoo recipe's pretraining steps: a capped recipe is its own zoo member (own
    # folder and stage keys). Tests set it to build the zoo in seconds; null: each recipe's own.
    max_steps: int | None = None


@dataclass
class PathsConfig:
    root: str = "."
    cache_dir: str = "~/.cache/msl-ablate"
    data_dir: str = MISSING
    zoo_dir: str = MISSING
    output_dir: str = MISSING
    results_dir: str = MISSING


@dataclass
class FindingConfig:
    """One of the paper's findings, as a test on a study's cells (``results/findings.py``).

    ``test``: ``best`` (the best cell overall by mean rank is one of ``cells`` and, against the
    best cell not in ``cells``, better beyond the interval on some benchmark and worse beyond it
    on none), ``similar`` (no paired
    difference between ``cells`` exceeds its interval), ``better`` (``cells[0]`` beats
    ``cells[1]`` beyond the interval); on ``benchmarks`` (table labels; empty: all).
    """

    claim: str = MISSING
    test: str = MISSING
    cells: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)


@dataclass
class ReportConfig:
    """What ``msl-ablate report`` makes of a study (sweeps/*.yaml): which axis is compared,
    against which cell, how it is drawn, and what the paper found."""

    title: str = MISSING
    axis: str = MISSING  # the store column that varies: lm, vision, strategy, image_size
    plot: str = "bars"  # bars (choices) | lines (an ordered axis, e.g. resolution)
    reference: str | None = None  # the cell every other is compared with (paired bootstrap)
    paper_order: list[str] = field(default_factory=list)  # the paper's ranking, best first
    published: dict[str, str] = field(default_factory=dict)  # cell -> published row name
    factors: dict[str, dict[str, str]] = field(default_factory=dict)  # factor -> cell -> level
    findings: list[FindingConfig] = field(default_factory=list)


@dataclass
class TrainConfig:
    study: str = "adhoc"
    scale: str = "custom"  # set by a scale preset: mini (CPU, tiny twins) or paper (clusters)
    # The resolution axis: a key of `resolutions` (a scale preset's low/mid/high in pixels);
    # null: the vision option's own image_size.
    resolution: str | None = None
    resolutions: dict[str, int] = field(default_factory=dict)
    # Text tokens per sample at each resolution (a preset may need fewer as image tokens grow).
    text_lengths: dict[str, int] = field(default_factory=dict)
    report: ReportConfig | None = None  # a study's report (sweeps/*.yaml)
    seed: int = 0
    optimized_metric: str | None = None  # the metric `train` returns to a Hydra sweeper
    offline_twins: bool = False  # load every checkpoint's tiny twin instead (offline proof)
    num_threads: int | None = None  # torch CPU threads; null: torch's default
    paths: PathsConfig = field(default_factory=PathsConfig)
    vision: Any = MISSING  # typed by the option's schema: one per backend
    lm: LMConfig = MISSING
    projector: ProjectorConfig = MISSING
    strategy: StrategyConfig = MISSING
    data: DataConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)


# Stored as `schema/<name>`, outside the option groups (so `--help` lists only real options);
# each option file names its schema first: `defaults: [/schema/<name>@_here_, _self_]`.
GROUP_SCHEMAS = {
    "vision_transformers": TransformersVisionConfig,
    "vision_timm": TimmVisionConfig,
    "vision_open_clip": OpenClipVisionConfig,
    "vision_fused": FusedVisionConfig,
    "lm": LMConfig,
    "projector": ProjectorConfig,
    "strategy": StrategyConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "tracking": TrackingConfig,
}


def register_schemas() -> None:
    """Store the root schema and each group's schemas in Hydra's ConfigStore; add our resolvers."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, node in GROUP_SCHEMAS.items():
        cs.store(group="schema", name=name, node=node)
