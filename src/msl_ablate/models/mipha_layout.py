"""The Mipha / LLaVA-Phi layout written from a harness model: the folder zhuyiche/llava-phi's
``load_pretrained_model`` reads (``models/released.py`` reads it back).

It is the way out for the study's Phi LMs, whose LM head has a bias that transformers' LLaVA
lacks (``models/llava_hf.py`` refuses them). ``config.json`` is the LM's config with Mipha's
``model_type`` and the nested ``vision_config`` (the tower's config with
``mm_vision_select_layer`` / ``mm_vision_select_feature``, and ``mm_projector``); one state dict
holds the LM (``model.*``, ``lm_head``), ``model.mm_projector.*`` and the whole tower under
``model.vision_tower.vision_model.*`` (transformers 4's names, which Mipha's code uses). The
tokenizer keeps the harness's chat template, so the harness reads the folder back prompting as it
trained; Mipha's own scripts prompt with their ``conv_phi_v0``.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn
from transformers import (
    CLIPImageProcessor,
    CLIPVisionModel,
    SiglipImageProcessor,
    SiglipVisionModel,
)

from msl_ablate.config.enums import ResizeStrategy
from msl_ablate.models.activations import checkpoint_activation
from msl_ablate.models.projector import MLPProjector
from msl_ablate.models.released import MIPHA_LMS, MIPHA_TOWERS
from msl_ablate.models.vision.hf import HFVisionEncoder
from msl_ablate.models.vlm import VisionLanguageModel, merge_lora

# The LM types Mipha's code builds on, and the model_type it saves each under.
MIPHA_TYPES = {lm: mipha for mipha, lm in MIPHA_LMS.items() if mipha != "llava_phi"}
# The image processor Mipha's builder loads for each tower class.
PROCESSORS = {SiglipVisionModel: SiglipImageProcessor, CLIPVisionModel: CLIPImageProcessor}


def mipha_problem(vlm: VisionLanguageModel) -> str | None:
    """Why ``vlm`` cannot be written in Mipha's layout, or None when it can."""
    tower = getattr(vlm.vision, "model", None)
    if not isinstance(vlm.vision, HFVisionEncoder) or not isinstance(tower, MIPHA_TOWERS):
        return f"Mipha's code reads SigLIP and CLIP towers; this one is {type(tower).__name__}"
    if vlm.vision.image_size != tower.config.image_size:
        return f"vision.image_size={vlm.vision.image_size} differs from the tower's own"
    if vlm.vision.image_transform.resize is ResizeStrategy.center_crop:
        return "Mipha pads to a square or resizes; it does not crop (vision.resize=center_crop)"
    model_type = vlm.lm.model.config.model_type
    if model_type not in MIPHA_TYPES:
        return f"Mipha's code builds {sorted(MIPHA_TYPES)} LMs; this one is {model_type}"
    projector = vlm.projector
    if not isinstance(projector, MLPProjector) or any(
        not isinstance(m, (nn.Linear, nn.GELU)) for m in projector.layers
    ):
        return "Mipha's projectors are linear or GELU MLPs (projector=linear, mlp2x_gelu, ...)"
    return None


def _unshared(state: dict) -> dict:
    """``state`` without the entries that share storage with an earlier one (tied weights)."""
    seen, out = set(), {}
    for key, value in state.items():
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            out[key] = value.detach().contiguous()
    return out


def _config(vlm: VisionLanguageModel, full_tower: nn.Module, depth: int) -> dict:
    """Mipha's ``config.json``: the LM's config with the nested ``vision_config``."""
    lm, vision = vlm.lm.model, vlm.vision
    text = lm.config.to_dict()
    text["hidden_act"] = checkpoint_activation(text.get("hidden_act"))
    tower = full_tower.config.to_dict() | {
        "model_type": "mipha_vision_model",
        "mm_vision_select_layer": vision.feature_layer,
        # "patch" drops CLIP's CLS and keeps SigLIP's every token; "cls_patch" keeps CLIP's CLS.
        "mm_vision_select_feature": "patch" if vision.drop_cls or not vision.num_prefix_tokens
        else "cls_patch",
        # Mipha's builder picks the tower class from this name; the family's type name says it.
        "vision_model_name_or_path": full_tower.config.model_type,
    }  # fmt: skip
    pads = vision.image_transform.resize is ResizeStrategy.letterbox
    return text | {
        "model_type": MIPHA_TYPES[lm.config.model_type],
        "architectures": [f"Mipha{type(lm).__name__}"],
        "image_aspect_ratio": "pad" if pads else "square",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "vision_config": {"vision_tower": tower, "mm_projector": {
            "mm_projector_type": "linear" if depth == 1 else f"mlp{depth}x_gelu",
            "mm_hidden_size": vlm.projector.in_dim, "hidden_size": vlm.projector.out_dim}},
    }  # fmt: skip


def save_mipha(vlm: VisionLanguageModel, full_tower: nn.Module, out: Path) -> Path:
    """Write ``vlm`` (LoRA merged into it first) in Mipha's layout to ``out``.

    Raises:
        ValueError: ``mipha_problem`` names a difference.
    """
    problem = mipha_problem(vlm)
    if problem is not None:
        raise ValueError(f"cannot export to the Mipha layout: {problem}")
    merge_lora(vlm)
    lm = vlm.lm.model
    layers = vlm.projector.layers
    depth = sum(isinstance(m, nn.Linear) for m in layers)
    # A linear projector is a bare nn.Linear in Mipha; an MLP the same nn.Sequential indices.
    projector = {
        (k.split(".", 1)[1] if depth == 1 else k): v for k, v in layers.state_dict().items()
    }
    state = {f"model.{k}": v for k, v in lm.get_decoder().state_dict().items()}
    state |= {f"lm_head.{k}": v for k, v in lm.get_output_embeddings().state_dict().items()}
    state |= {f"model.mm_projector.{k}": v for k, v in projector.items()}
    tower = dict(full_tower.state_dict()) | vlm.vision.model.state_dict()  # trained blocks in
    state |= {f"model.vision_tower.vision_model.{k}": v for k, v in tower.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(_unshared(state), str(out / "model.safetensors"))
    config = _config(vlm, full_tower, depth)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    vlm.lm.tokenizer.save_pretrained(out)
    transform = vlm.vision.image_transform
    PROCESSORS[type(full_tower)](
        size={"height": vlm.vision.image_size, "width": vlm.vision.image_size},
        do_center_crop=False, image_mean=transform.mean.flatten().tolist(),
        image_std=transform.std.flatten().tolist(),
    ).save_pretrained(out)  # fmt: skip
    return out
