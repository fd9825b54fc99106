"""Released LLaVA-style checkpoints read into the harness's three parts.

Two layouts:

* **llava-hf**: a ``LlavaForConditionalGeneration`` folder with its processor (llava-hf's
  conversions of LLaVA-1.5, and ``msl-ablate export``'s output).
* **mipha**: Mipha's and LLaVA-Phi's ``save_pretrained`` folder (zhuyiche/llava-phi): one
  state dict with the LM (transformers names under ``model.``, ``lm_head``), the projector
  (``model.mm_projector.{0,2}``, LLaVA's ``mm_projector_type``) and the vision tower
  (``model.vision_tower.vision_model.*``); the tower's config and its feature selection nested
  in ``config.json``'s ``vision_config``; the image processor's ``preprocessor_config.json``.

Each reader returns a ``ReleasedModel``: a whole transformers vision tower, an LM with its
tokenizer and template, and the projector's weights under ``MLPProjector``'s names, with the
options (feature layer, CLS, resize) that make the harness compute what the release computes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    SiglipVisionModel,
)

from msl_ablate.config.enums import RELEASE_LAYOUTS, ResizeStrategy
from msl_ablate.models.chat_templates import MIPHA_PHI_TEMPLATE

# Mipha's / LLaVA-Phi's model types and the transformers LM each builds on (their code subclasses
# PhiModel, GemmaModel and a vendored Phi-3 with transformers' names).
MIPHA_LMS = {"mipha_phi": "phi", "llava_phi": "phi", "mipha_gemma": "gemma", "mipha_phi3": "phi3"}
# Vision classes a Mipha tower can be: the one whose parameters match the saved ones is taken.
MIPHA_TOWERS = (SiglipVisionModel, CLIPVisionModel)


@dataclass
class ReleasedModel:
    """A released checkpoint as the harness's parts.

    Attributes:
        vision: The whole vision tower (the harness cuts it at ``feature_layer``).
        image_processor: Its image processor (mean and std; saved with the tower).
        image_size: Input resolution.
        feature_layer: Hidden-state index the features are read from.
        drop_cls: Whether the prefix token is dropped.
        resize: How non-square images are made square.
        lm: The causal LM.
        tokenizer: Its tokenizer, with the chat template the release prompts with.
        projector: The ``conf/projector`` option (LLaVA's ``mm_projector_type`` names).
        projector_state: The projector's weights under ``MLPProjector``'s names.
    """

    vision: PreTrainedModel
    image_processor: Any
    image_size: int
    feature_layer: int
    drop_cls: bool
    resize: ResizeStrategy
    lm: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    projector: str
    projector_state: dict[str, torch.Tensor]


def _prefix_tokens(tower: nn.Module) -> int:
    """Tokens before the patches (CLIP's CLS: 1; SigLIP: 0), from the position table's size."""
    config = tower.config
    patches = (config.image_size // config.patch_size) ** 2
    positions = getattr(tower, "vision_model", tower).embeddings.position_embedding
    return positions.num_embeddings - patches


def _resize(processor: Any, pads: bool) -> ResizeStrategy:
    if pads:
        return ResizeStrategy.letterbox
    return ResizeStrategy.center_crop if getattr(processor, "do_center_crop", False) else (
        ResizeStrategy.resize)  # fmt: skip


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load every parameter of ``model`` from ``state``, and nothing else."""
    own = set(model.state_dict())
    tied = {name for name in own if name not in state and name == "lm_head.weight"}
    missing = sorted(own - set(state) - tied)
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise ValueError(
            f"{where}: the weights do not fit {type(model).__name__}: missing {missing[:3]} "
            f"({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})"
        )
    model.load_state_dict(state, strict=False)
    if tied:
        model.tie_weights()


def _projector_type(depth: int, act: str, where: str) -> str:
    if act != "gelu":
        raise ValueError(f"{where}: projector activation {act!r}; the harness's are GELU MLPs")
    return "linear" if depth == 1 else f"mlp{depth}x_gelu"


def read_llava_hf(folder: Path) -> ReleasedModel:
    """Read a ``LlavaForConditionalGeneration`` folder with its processor.

    Raises:
        ValueError: Not a LLaVA folder, or a feature it has and the harness lacks (features
            from several layers, a projector without GELU), named with the file.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from msl_ablate.models.llava_hf import string_content_template

    where = f"{folder}/config.json"
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != "llava":
        raise ValueError(f"{where}: model_type {model_type!r}, expected 'llava' "
                         f"(a LlavaForConditionalGeneration folder; --layout mipha for Mipha)")  # fmt: skip
    config = AutoConfig.from_pretrained(folder)
    if not isinstance(config.vision_feature_layer, int):
        raise ValueError(f"{where}: vision_feature_layer {config.vision_feature_layer} reads "
                         "several layers; the harness reads one")  # fmt: skip
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    lm = AutoModelForCausalLM.from_config(config.text_config)
    prefix = lm.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in model.model.language_model.state_dict().items()}
    state |= {f"lm_head.{k}": v for k, v in model.lm_head.state_dict().items()}
    _load_strict(lm, state, where)
    proj = model.model.multi_modal_projector
    projector_state = {}
    for index, layer in ((0, proj.linear_1), (2, proj.linear_2)):
        projector_state[f"layers.{index}.weight"] = layer.weight.detach().clone()
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        projector_state[f"layers.{index}.bias"] = bias.detach().clone()
    tokenizer = processor.tokenizer
    if not isinstance(tokenizer.chat_template, str) or not tokenizer.chat_template:
        # llava-hf keeps the template on the processor, written for content lists.
        tokenizer.chat_template = string_content_template(processor.chat_template)
    images = processor.image_processor
    return ReleasedModel(
        vision=model.model.vision_tower, image_processor=images,
        image_size=config.vision_config.image_size, feature_layer=config.vision_feature_layer,
        drop_cls=config.vision_feature_select_strategy == "default",
        resize=_resize(images, getattr(images, "do_pad", False)), lm=lm, tokenizer=tokenizer,
        projector=_projector_type(2, config.projector_hidden_act, where),
        projector_state=projector_state,
    )  # fmt: skip


def mipha_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Mipha folder's safetensors files, by name."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights (Mipha saves safetensors)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state |= load_file(str(file))
    return state


def _split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, without it (removed from ``state``)."""
    part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    for k in list(state):
        if k.startswith(prefix):
            del state[k]
    return part


def _mipha_tower(tower_config: dict[str, Any], state: dict[str, torch.Tensor], where: str):
    """The transformers tower whose parameters are exactly the saved ones, loaded."""

    def without_head(names: set[str]) -> set[str]:
        return {n for n in names if not n.startswith("head.")}

    # Mipha saved the tower as transformers 4 named it (`vision_model.` first); transformers 5's
    # vision models have no such level.
    state = {k.removeprefix("vision_model."): v for k, v in state.items()}
    fields = {k: v for k, v in tower_config.items()
              if k not in ("model_type", "architectures", "transformers_version")}  # fmt: skip
    for cls in MIPHA_TOWERS:
        with torch.device("meta"):
            probe = cls(cls.config_class(**fields))
        if without_head(set(probe.state_dict())) == without_head(set(state)):
            tower = cls(cls.config_class(**fields))
            tower.load_state_dict(state, strict=False)  # SigLIP's pooling head is never read
            return tower
    raise ValueError(
        f"{where}: vision_config.vision_tower matches none of "
        f"{[c.__name__ for c in MIPHA_TOWERS]} ({len(state)} tower weights)"
    )


def read_mipha(folder: Path) -> ReleasedModel:
    """Read a Mipha / LLaVA-Phi folder.

    Raises:
        ValueError: A ``config.json`` without Mipha's keys, an unknown LM type, weights that do
            not fit, or a projector type the harness lacks, named with the file and key.
    """
    where = f"{folder}/config.json"
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model_type = raw.get("model_type")
    if model_type not in MIPHA_LMS:
        raise ValueError(f"{where}: model_type {model_type!r}, expected one of "
                         f"{sorted(MIPHA_LMS)} (--layout llava-hf for llava-hf folders)")  # fmt: skip
    visual = raw.get("vision_config") or {}
    if not isinstance(visual.get("vision_tower"), dict) or not isinstance(
        visual.get("mm_projector"), dict
    ):
        raise ValueError(
            f"{where}: vision_config needs the dicts 'vision_tower' and 'mm_projector'"
        )
    tower_config = dict(visual["vision_tower"])
    layer = tower_config.pop("mm_vision_select_layer", -2)
    feature = tower_config.pop("mm_vision_select_feature", "patch")
    tower_config.pop("vision_model_name_or_path", None)
    state = mipha_state(folder)
    tower = _mipha_tower(tower_config, _split(state, "model.vision_tower."), where)
    projector = _split(state, "model.mm_projector.")
    if set(projector) == {"weight", "bias"}:  # linear: a bare nn.Linear
        projector_state = {f"layers.0.{k}": v for k, v in projector.items()}
    else:  # nn.Sequential(Linear, GELU, Linear, ...): the same indices as MLPProjector.layers
        projector_state = {f"layers.{k}": v for k, v in projector.items()}
    depth = len({k.split(".")[1] for k in projector_state})
    kind = visual["mm_projector"].get("mm_projector_type", "linear")
    if kind != _projector_type(depth, "gelu", where):
        raise ValueError(f"{where}: mm_projector_type {kind!r} but the weights hold {depth} layers")
    text = {
        k: v for k, v in raw.items() if k not in ("vision_config", "model_type", "architectures")
    }
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(MIPHA_LMS[model_type], **text))
    _load_strict(lm, state, where)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not isinstance(tokenizer.chat_template, str) or not tokenizer.chat_template:
        # Mipha's tokenizers have none: its scripts prompt with conv_phi_v0 (an export of ours
        # keeps the template the run trained with).
        tokenizer.chat_template = MIPHA_PHI_TEMPLATE
    lm.generation_config.eos_token_id = tokenizer.eos_token_id  # it stops at EOS alone
    images = AutoImageProcessor.from_pretrained(folder, backend="pil")
    return ReleasedModel(
        vision=tower, image_processor=images, image_size=tower.config.image_size,
        feature_layer=layer, drop_cls=feature == "patch" and _prefix_tokens(tower) > 0,
        resize=_resize(images, raw.get("image_aspect_ratio") == "pad"), lm=lm,
        tokenizer=tokenizer, projector=kind, projector_state=projector_state,
    )  # fmt: skip


def read_released(folder: Path, layout: str) -> ReleasedModel:
    """Read ``folder`` in ``layout`` (one of ``config.enums.RELEASE_LAYOUTS``)."""
    if layout not in RELEASE_LAYOUTS:
        raise ValueError(f"--layout {layout!r}: one of {', '.join(RELEASE_LAYOUTS)}")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}/config.json does not exist (a released checkpoint folder)"
        )
    return read_llava_hf(folder) if layout == "llava-hf" else read_mipha(folder)


def save_released(released: ReleasedModel, out: Path) -> dict[str, Path]:
    """Write the tower and the LM as folders ``from_pretrained`` loads; returns them."""
    vision, lm = out / "vision", out / "lm"
    released.vision.save_pretrained(vision)
    released.image_processor.save_pretrained(vision)
    released.lm.save_pretrained(lm)
    released.tokenizer.save_pretrained(lm)
    return {"vision": vision, "lm": lm}
