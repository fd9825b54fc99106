"""Checks that span config groups, all collected into one ``ConfigError`` before anything is built."""

from __future__ import annotations

from omegaconf import DictConfig

from msl_ablate.training.strategy import Mode
from msl_ablate.utils.errors import ConfigError

STAGE_NAMES = ("align", "finetune")
ALLOWED_MODES = {
    "vision": {Mode.frozen, Mode.full, Mode.partial},
    "projector": {Mode.frozen, Mode.full},
    "lm": {Mode.frozen, Mode.full, Mode.lora, Mode.qlora},
}


def _stage_problems(key: str, stage: DictConfig, cfg: DictConfig) -> list[str]:
    where = f"strategy.stages.{key}"
    problems = []
    if key not in STAGE_NAMES:
        problems.append(f"{where}: stage names are {list(STAGE_NAMES)}, got {key!r}")
    if stage.name != key:
        problems.append(f"{where}.name must equal its key {key!r}, got {stage.name!r}")
    if stage.split not in cfg.data.files:
        problems.append(
            f"{where}.split={stage.split!r} is not a split of data.files {sorted(cfg.data.files)}"
        )
    if stage.max_steps < 1:
        problems.append(f"{where}.max_steps must be >= 1, got {stage.max_steps}")
    if stage.batch_size < 1:
        problems.append(f"{where}.batch_size must be >= 1, got {stage.batch_size}")
    trains_something = False
    for component, allowed in ALLOWED_MODES.items():
        spec = stage[component]
        mode = Mode(spec.mode)
        if mode not in allowed:
            problems.append(
                f"{where}.{component}.mode={mode.value!r} is not allowed; choose one of "
                f"{sorted(m.value for m in allowed)}"
            )
            continue
        if mode is not Mode.frozen:
            trains_something = True
            if spec.lr <= 0:
                problems.append(
                    f"{where}.{component}.lr must be > 0 when mode={mode.value}, got {spec.lr}"
                )
        if mode is Mode.partial and spec.trainable_blocks < 1:
            problems.append(f"{where}.{component}.trainable_blocks must be >= 1 for mode=partial")
        if mode is not Mode.partial and spec.trainable_blocks != 0:
            problems.append(
                f"{where}.{component}.trainable_blocks={spec.trainable_blocks} only applies to mode=partial"
            )
    if not trains_something:
        problems.append(f"{where}: every component is frozen; the stage would train nothing")
    return problems


def check_config(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing every cross-group problem of a composed config.

    Raises:
        ConfigError: If any check fails.
    """
    problems: list[str] = []
    if not cfg.strategy.stages:
        problems.append("strategy.stages is empty; define at least one of align, finetune")
    for key, stage in cfg.strategy.stages.items():
        problems += _stage_problems(key, stage, cfg)
    if cfg.data.generator is None and not cfg.data.root:
        problems.append(
            f"data.root must be set when data.generator is null (conf/data/{cfg.data.name}.yaml)"
        )
    if cfg.eval.split not in cfg.data.files:
        problems.append(
            f"eval.split={cfg.eval.split!r} is not a split of data.files {sorted(cfg.data.files)}"
        )
    for group in ("vision", "lm"):
        if cfg[group].checkpoint is None and cfg[group].twin is None:
            problems.append(
                f"{group}.checkpoint and {group}.twin are both null (conf/{group}/{cfg[group].name}.yaml)"
            )
    if problems:
        raise ConfigError(problems)
