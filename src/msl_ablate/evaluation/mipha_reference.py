"""Mipha's forward pass on a folder in its layout, written from zhuyiche/llava-phi's code rather
than through the harness's reader: the export's parity gate for ``--format mipha``.

As Mipha computes it: the image padded to a square with the processor's mean colour
(``expand2square``) when ``image_aspect_ratio`` is ``pad``; the folder's image processor;
``hidden_states[mm_vision_select_layer]`` of the tower, without CLIP's CLS for ``patch``
(SigLIP has none); ``mm_projector``; the features spliced where the prompt has ``<image>``
(``tokenizer_image_token``: the text on each side tokenized on its own); the LM on the embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, CLIPVisionModel

from msl_ablate.models.released import MIPHA_LMS, MIPHA_TOWERS, mipha_state


class MiphaReference:
    """The parts of a Mipha folder, loaded as Mipha loads them."""

    def __init__(self, folder: Path):
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        state = mipha_state(folder)
        tower_config = dict(raw["vision_config"]["vision_tower"])
        self.layer = tower_config.pop("mm_vision_select_layer")
        self.feature = tower_config.pop("mm_vision_select_feature")
        for key in ("vision_model_name_or_path", "model_type", "architectures"):
            tower_config.pop(key, None)
        prefix = "model.vision_tower.vision_model."
        tower_state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        self.tower = self._tower(tower_config, tower_state)
        projector = {k.removeprefix("model.mm_projector."): v for k, v in state.items()
                     if k.startswith("model.mm_projector.")}  # fmt: skip
        self.projector = self._projector(projector)
        text = {k: v for k, v in raw.items() if k not in ("vision_config", "model_type")}
        config = AutoConfig.for_model(MIPHA_LMS[raw["model_type"]], **text)
        self.lm = AutoModelForCausalLM.from_config(config).eval()
        lm_state = {k: v for k, v in state.items() if not k.startswith(("model.vision_tower.",
                                                                         "model.mm_projector."))}  # fmt: skip
        self.lm.load_state_dict(lm_state, strict=False)
        if "lm_head.weight" not in lm_state:
            self.lm.tie_weights()
        self.processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
        self.pad = raw.get("image_aspect_ratio") == "pad"

    @staticmethod
    def _tower(config: dict, state: dict) -> nn.Module:
        for cls in MIPHA_TOWERS:
            tower = cls(cls.config_class(**config)).eval()
            missing, _ = tower.load_state_dict(state, strict=False)
            if not missing:
                return tower
        raise ValueError("the folder's tower fits neither SigLIP nor CLIP")

    @staticmethod
    def _projector(state: dict) -> nn.Module:
        if set(state) == {"weight", "bias"}:
            layer = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
            layer.load_state_dict(state)
            return layer
        indices = sorted({int(k.split(".")[0]) for k in state})
        layers: list[nn.Module] = []
        for i in range(indices[-1] + 1):
            weight = state.get(f"{i}.weight")
            layers.append(
                nn.GELU() if weight is None else nn.Linear(weight.shape[1], weight.shape[0])
            )
        module = nn.Sequential(*layers)
        module.load_state_dict(state)
        return module

    @torch.no_grad()
    def logits(
        self, image: Image.Image | None, before: list[int], after: list[int]
    ) -> torch.Tensor:
        """``(L, V)`` logits of ``before + <image features> + after`` (no image: ``before``)."""
        embed = self.lm.get_input_embeddings()
        parts = [embed(torch.tensor(before))]
        if image is not None:
            if self.pad:  # expand2square
                side = max(image.size)
                fill = tuple(int(m * 255) for m in self.processor.image_mean)
                square = Image.new("RGB", (side, side), fill)
                square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
                image = square
            pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
            hidden = self.tower(pixel_values=pixels, output_hidden_states=True).hidden_states
            features = hidden[self.layer]
            if self.feature == "patch" and isinstance(self.tower, CLIPVisionModel):
                features = features[:, 1:]  # CLIP's CLS (SigLIP has none)
            parts += [self.projector(features)[0], embed(torch.tensor(after))]
        return self.lm(inputs_embeds=torch.cat(parts)[None]).logits[0]
