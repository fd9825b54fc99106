"""The plain transformers model a user would train instead: ``LlavaForConditionalGeneration``
built from the same tower and LM configs, with this model's weights and trainability.

``msl-ablate bench`` times the harness against it. It is the reference, so it is built as a
user would build it: the whole tower from its checkpoint (every block, then the features read
at ``vision_feature_layer``), the LM's own config (its activation unfused).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration

from msl_ablate.models.projector import MLPProjector
from msl_ablate.models.vision.hf import HFVisionEncoder
from msl_ablate.models.vlm import VisionLanguageModel


def reference_problem(vlm: VisionLanguageModel) -> str | None:
    """Why ``vlm`` has no transformers LLaVA counterpart, or None when it has one."""
    if not isinstance(vlm.vision, HFVisionEncoder):
        return f"its vision encoder is a {type(vlm.vision).__name__}, not a transformers tower"
    tower = vlm.vision.model
    if vlm.vision.image_size != tower.config.image_size:
        return (
            f"vision.image_size={vlm.vision.image_size} differs from the tower's "
            f"{tower.config.image_size} (LLaVA does not interpolate position embeddings)"
        )
    if vlm.vision.drop_cls and vlm.vision.num_prefix_tokens != 1:
        return "LLaVA drops exactly one prefix token; this tower has registers"
    projector = vlm.projector
    if not (isinstance(projector, MLPProjector) and len(projector.layers) == 3):
        return "LLaVA's projector is Linear -> GELU -> Linear (projector=mlp2x_gelu)"
    if not isinstance(projector.layers[1], nn.GELU):
        return "LLaVA's projector activation is GELU (projector.act=gelu)"
    return None


def parameter_names(vlm: VisionLanguageModel) -> dict[str, str]:
    """``{parameter of vlm: parameter of the LLaVA model}`` for every mapped parameter."""
    lm = vlm.lm.model
    prefix = lm.base_model_prefix  # "model" in the *ForCausalLM classes
    head = {n for n, _ in lm.get_output_embeddings().named_parameters(prefix="lm_head")}
    names = {}
    for name, _ in vlm.named_parameters():
        part, _, rest = name.partition(".")
        if part == "vision":  # vision.model.<n>: the same tower class, fewer blocks
            names[name] = "model.vision_tower." + rest.removeprefix("model.")
        elif part == "projector":  # layers.0 / layers.2 -> linear_1 / linear_2
            index, _, tensor = rest.removeprefix("layers.").partition(".")
            names[name] = f"model.multi_modal_projector.linear_{1 if index == '0' else 2}.{tensor}"
        elif rest.startswith(f"model.{prefix}."):  # lm.model.<prefix>.<n>
            names[name] = "model.language_model." + rest.removeprefix(f"model.{prefix}.")
        elif rest.removeprefix("model.") in head:
            names[name] = rest.removeprefix("model.")
    return names


def llava_reference(
    vlm: VisionLanguageModel, full_tower: nn.Module
) -> LlavaForConditionalGeneration:
    """The transformers LLaVA model with ``vlm``'s weights and trainability.

    Args:
        vlm: The harness's model, trainability already set for the stage.
        full_tower: The tower loaded whole from the checkpoint ``vlm.vision`` was built from
            (the harness's copy is cut at the feature layer).

    Returns:
        A model whose loss on a batch of the harness's data equals ``vlm``'s.

    Raises:
        ValueError: ``reference_problem`` names a difference, or a trained parameter of
            ``vlm`` (a LoRA adapter) has no counterpart.
    """
    problem = reference_problem(vlm)
    if problem is not None:
        raise ValueError(f"no transformers LLaVA counterpart of this model: {problem}")
    config = LlavaConfig(
        vision_config=full_tower.config.to_dict(),
        text_config=vlm.lm.model.config.to_dict(),
        image_token_id=vlm.image_token_id,
        image_seq_length=vlm.num_image_tokens,
        projector_hidden_act="gelu",
        vision_feature_layer=vlm.vision.feature_layer,
        vision_feature_select_strategy="default" if vlm.vision.drop_cls else "full",
        multimodal_projector_bias=True,
    )
    reference = LlavaForConditionalGeneration(config)
    head = vlm.lm.model.get_output_embeddings()
    if head.bias is not None:  # Phi's head has a bias, LLaVA's class none: same cost with one
        reference.lm_head = nn.Linear(head.in_features, head.out_features, bias=True)
    reference.model.vision_tower.load_state_dict(full_tower.state_dict(), strict=False)
    names = parameter_names(vlm)
    unmapped = [n for n, p in vlm.named_parameters() if p.requires_grad and n not in names]
    if unmapped:
        raise ValueError(
            f"no transformers LLaVA counterpart of the trained parameters {unmapped[:3]} "
            f"({len(unmapped)} in all; LoRA adapters are not compared)"
        )
    own = dict(reference.named_parameters())
    for param in own.values():
        param.requires_grad_(False)
    for name, target in names.items():
        source = vlm.get_parameter(name)
        with torch.no_grad():
            own[target].copy_(source)
        own[target].requires_grad_(source.requires_grad)
    return reference
