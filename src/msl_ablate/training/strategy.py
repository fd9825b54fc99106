"""Turn a stage spec (``frozen | full | partial | lora | qlora`` per component) into trainability.

``strategy`` is data: the config lists stages, and for each one the mode and learning rate
of every component. This module applies it to a ``VisionLanguageModel``: ``requires_grad``
flags, PEFT LoRA wrapping, optimizer parameter groups, and the trainable-only state that a
stage saves and the next one loads.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.utils.files import atomic_path
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

COMPONENTS = ("vision", "projector", "lm")


class Mode(str, Enum):
    """How a component is trained in a stage."""

    frozen = "frozen"
    full = "full"
    partial = "partial"  # vision only: the last `trainable_blocks` blocks
    lora = "lora"  # LM only: PEFT LoRA adapters
    qlora = "qlora"  # LM only: LoRA on a 4-bit base (bitsandbytes + CUDA)


def _set_trainable(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _apply_lora(vlm: VisionLanguageModel, lora: DictConfig) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(vlm.lm.model, PeftModel):  # already wrapped by an earlier stage
        vlm.lm.model.base_model.enable_adapter_layers()
    else:
        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(vlm.lm.lora_target_modules or []) or "all-linear",
            task_type="CAUSAL_LM",
        )
        vlm.lm.model = get_peft_model(vlm.lm.model, config)
    for name, p in vlm.lm.named_parameters():
        p.requires_grad_("lora_" in name)


def apply_stage(vlm: VisionLanguageModel, stage: DictConfig) -> list[dict]:
    """Set trainability for one stage and return the optimizer parameter groups.

    Args:
        vlm: The model.
        stage: A ``strategy.stages.<name>`` node.

    Returns:
        One parameter group per trained component: ``{"name", "params", "lr"}``.

    Raises:
        RuntimeError: ``qlora`` without CUDA and bitsandbytes.
    """
    vision_mode = Mode(stage.vision.mode)
    _set_trainable(vlm.vision, vision_mode is Mode.full)
    if vision_mode is Mode.partial:
        for block in list(vlm.vision.blocks)[-stage.vision.trainable_blocks :]:
            _set_trainable(block, True)
    _set_trainable(vlm.projector, Mode(stage.projector.mode) is Mode.full)
    lm_mode = Mode(stage.lm.mode)
    if lm_mode is Mode.qlora:
        raise RuntimeError(
            "strategy lm.mode=qlora needs a CUDA GPU and bitsandbytes, and this build of msl-ablate "
            "only loads LMs in full precision; use lm.mode=lora"
        )
    if lm_mode is Mode.lora:
        _apply_lora(vlm, stage.lora)
    else:
        _set_trainable(vlm.lm, lm_mode is Mode.full)
    groups = []
    for name in COMPONENTS:
        # Frozen parts stay in eval mode (no dropout noise in features they do not learn from).
        component = getattr(vlm, name)
        component.train(any(p.requires_grad for p in component.parameters()))
        params = [p for p in getattr(vlm, name).parameters() if p.requires_grad]
        if params:
            groups.append({"name": name, "params": params, "lr": stage[name].lr})
    log_trainability(vlm, stage)
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


def log_trainability(vlm: VisionLanguageModel, stage: DictConfig) -> None:
    rows = [f"{'component':<10} {'mode':<8} {'trainable':>12} {'total':>12}"]
    for name, (trained, total) in trainability(vlm).items():
        rows.append(f"{name:<10} {Mode(stage[name].mode).value:<8} {trained:>12,} {total:>12,}")
    log.info("Stage %s trainability:\n%s", stage.name, "\n".join(rows))


def trainable_state_dict(vlm: VisionLanguageModel) -> dict[str, torch.Tensor]:
    """Only the parameters that the current stage trains (what a stage checkpoint holds)."""
    return {n: p.detach().cpu().contiguous() for n, p in vlm.named_parameters() if p.requires_grad}


def save_trainable(vlm: VisionLanguageModel, path: str | Path) -> Path:
    """Save the trainable parameters as safetensors, atomically."""
    with atomic_path(path) as tmp:
        save_file(trainable_state_dict(vlm), str(tmp))
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
