"""Turn a stage spec (``frozen | full | partial | lora | qlora`` per component) into trainability.

``strategy`` is data: the config lists stages, and for each one the mode and learning rate
of every component. This module applies it to a ``VisionLanguageModel``: ``requires_grad``
flags, PEFT LoRA wrapping, optimizer parameter groups, and the trainable-only state that a
stage saves and the next one loads. What can be checked without the model is checked
earlier, in ``config/checks.py``; what needs the model (encoder depth, LoRA targets) here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from torch import nn

from msl_ablate.config.enums import COMPONENTS, LORA_MODES, Mode
from msl_ablate.models.lm import CausalLM
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.training.sharding import trainable_state
from msl_ablate.utils.files import atomic_path
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def _set_trainable(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _check_lora_targets(lm: CausalLM) -> None:
    """Every configured target must name a Linear layer (PEFT ignores some misses silently)."""
    if lm.lora_target_modules is None:
        return
    linear = {n.rsplit(".", 1)[-1] for n, m in lm.model.named_modules() if isinstance(m, nn.Linear)}
    missing = sorted(set(lm.lora_target_modules) - linear)
    if missing:
        raise ValueError(
            f"lm.lora_target_modules {missing} match no Linear layer of {lm.name} "
            f"({type(lm.model).__name__}); its Linear layers are {sorted(linear)} "
            f"(conf/lm/{lm.name}.yaml)"
        )


def _apply_lora(vlm: VisionLanguageModel, lora: DictConfig, quantized: bool) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if isinstance(vlm.lm.model, PeftModel):  # wrapped by an earlier stage: same adapters
        vlm.lm.model.base_model.enable_adapter_layers()
    else:
        _check_lora_targets(vlm.lm)
        if quantized:
            # Casts norms to fp32 and lets gradients reach the adapters through 4-bit layers.
            vlm.lm.model = prepare_model_for_kbit_training(
                vlm.lm.model, use_gradient_checkpointing=False
            )
        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(vlm.lm.lora_target_modules or []) or "all-linear",
            task_type="CAUSAL_LM",
        )
        vlm.lm.model = get_peft_model(vlm.lm.model, config)
    # PEFT knows which parameters are the adapters: freeze the LM, then let it mark the adapter
    # trainable (set_adapter does so), also when an earlier stage created it.
    _set_trainable(vlm.lm, False)
    vlm.lm.model.set_adapter(vlm.lm.model.active_adapter)


def _apply_vision(vlm: VisionLanguageModel, stage: DictConfig) -> None:
    mode = Mode(stage.vision.mode)
    _set_trainable(vlm.vision, mode is Mode.full)
    if mode is Mode.frozen:
        return
    if mode is Mode.partial:
        blocks = list(vlm.vision.blocks)
        k = stage.vision.trainable_blocks
        if not 1 <= k <= len(blocks):
            raise ValueError(
                f"strategy.stages.{stage.name}.vision.trainable_blocks={k} does not fit the "
                f"vision encoder ({type(vlm.vision).__name__}), which has {len(blocks)} blocks; "
                f"choose 1..{len(blocks)}"
            )
        for block in blocks[-k:]:
            _set_trainable(block, True)
    unread = vlm.vision.unread_parameters()
    params = dict(vlm.vision.named_parameters())
    for name in unread:
        params[name].requires_grad_(False)  # no gradient ever reaches it
    if unread:
        shown = ", ".join(unread[:4]) + (f" and {len(unread) - 4} more" if len(unread) > 4 else "")
        log.info("Stage %s: the vision tower's %s never feed its features: left frozen",
                 stage.name, shown)  # fmt: skip


def _apply_lm(vlm: VisionLanguageModel, stage: DictConfig) -> None:
    mode = Mode(stage.lm.mode)
    if mode is Mode.qlora and not getattr(vlm.lm.model, "is_loaded_in_4bit", False):
        raise RuntimeError(
            f"strategy.stages.{stage.name}.lm.mode=qlora but the LM {vlm.lm.name} was loaded in "
            f"full precision; build it with models.assemble.build_vlm, which loads it in 4 bits "
            f"when a stage uses qlora (or use lm.mode=lora)"
        )
    if mode in LORA_MODES:
        _apply_lora(vlm, stage.lora, quantized=mode is Mode.qlora)
    else:
        # After a LoRA stage the adapters stay in the model and follow the LM's mode.
        _set_trainable(vlm.lm, mode is Mode.full)


def apply_stage(vlm: VisionLanguageModel, stage: DictConfig) -> list[dict]:
    """Set trainability for one stage and return the optimizer parameter groups.

    Args:
        vlm: The model.
        stage: A ``strategy.stages.<name>`` node.

    Returns:
        One parameter group per trained component: ``{"name", "params", "lr"}``.

    Raises:
        ValueError: ``vision.trainable_blocks`` exceeds the encoder's depth, or a LoRA target
            names no Linear layer of the LM.
        RuntimeError: ``qlora`` on an LM that was not loaded in 4 bits.
    """
    _apply_vision(vlm, stage)
    _set_trainable(vlm.projector, Mode(stage.projector.mode) is Mode.full)
    _apply_lm(vlm, stage)
    groups = []
    for name in COMPONENTS:
        # Frozen parts stay in eval mode (no dropout noise in features they do not learn from).
        component = getattr(vlm, name)
        params = [p for p in component.parameters() if p.requires_grad]
        component.train(bool(params))
        if params:
            groups.append({"name": name, "params": params, "lr": stage[name].lr})
    log_trainability(vlm, stage)
    return groups


def apply_stages_through(vlm: VisionLanguageModel, stages: DictConfig, name: str) -> list[dict]:
    """Apply each stage's trainability in order, through ``name`` (LoRA wraps the LM where its
    stage did); returns ``name``'s parameter groups.

    Raises:
        KeyError: ``stages`` has no stage ``name``.
    """
    if name not in stages:
        raise KeyError(f"strategy.stages has no stage {name!r}; it has {list(stages)}")
    for stage_name, node in stages.items():
        groups = apply_stage(vlm, node)
        if stage_name == name:
            break
    return groups


def trainability(vlm: VisionLanguageModel) -> dict[str, tuple[int, int]]:
    """``{component: (trainable, total)}`` parameter counts."""
    return {
        name: (
            sum(p.numel() for p in getattr(vlm, name).parameters() if p.requires_grad),
            sum(p.numel() for p in getattr(vlm, name).parameters()),
        )
        for name in COMPONENTS
    }


def trainability_table(vlm: VisionLanguageModel, stage: DictConfig) -> str:
    """The per-component table (mode, trainable and total parameters) of a stage, with totals."""
    rows = [f"{'component':<10} {'mode':<8} {'trainable':>14} {'total':>14}"]
    counts = trainability(vlm)
    for name, (trained, total) in counts.items():
        rows.append(f"{name:<10} {Mode(stage[name].mode).value:<8} {trained:>14,} {total:>14,}")
    trained, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
    rows.append(f"{'all':<10} {'':<8} {trained:>14,} {total:>14,}  ({trained / total:.2%})")
    return "\n".join(rows)


def log_trainability(vlm: VisionLanguageModel, stage: DictConfig) -> None:
    log.info("Stage %s trainability:\n%s", stage.name, trainability_table(vlm, stage))


def save_trainable(vlm: VisionLanguageModel, path: str | Path) -> Path:
    """Save the trainable parameters as safetensors, atomically."""
    return save_state(trainable_state(vlm), path)


def save_state(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Save ``{name: tensor}`` as safetensors, atomically."""
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def load_trainable(vlm: VisionLanguageModel, path: str | Path) -> list[str]:
    """Load a stage checkpoint saved by ``save_trainable``; every saved key must exist.

    Returns:
        The loaded parameter names.

    Raises:
        FileNotFoundError: No such checkpoint.
        RuntimeError: A saved parameter is missing from the model or has another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage checkpoint not found: {path}")
    state = load_file(str(path))
    params = dict(vlm.named_parameters())
    bad = [k for k, v in state.items() if k not in params or params[k].shape != v.shape]
    if bad:
        raise RuntimeError(
            f"{path}: parameters missing or of another shape in the model: {bad[:5]}"
        )
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)
    return list(state)
