"""A tiny checkpoint in Mipha's release layout (zhuyiche/llava-phi's ``save_pretrained``), and
Mipha's own forward pass to check the harness against, written from its code's description:
``expand2square`` with the mean colour, the image processor, hidden state
``mm_vision_select_layer`` (all tokens for SigLIP's ``patch``), ``mm_projector``, the features
spliced where ``<image>`` is, the Phi LM on the embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from transformers import (
    AutoTokenizer,
    PhiConfig,
    PhiForCausalLM,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from msl_ablate.models.chat_templates import MIPHA_PHI_TEMPLATE

SIZE, WIDTH = 32, 32


class TinyMipha:
    """The parts of a tiny Mipha, kept to compute its logits as Mipha does."""

    def __init__(self, tokenizer_dir: Path, seed: int = 0):
        torch.manual_seed(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.tower_config = SiglipVisionConfig(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
            image_size=SIZE, patch_size=8,
        )  # fmt: skip
        self.tower = SiglipVisionModel(self.tower_config).eval()
        self.projector = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, WIDTH))
        self.lm = PhiForCausalLM(PhiConfig(
            vocab_size=len(self.tokenizer), hidden_size=WIDTH, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=256,
        )).eval()  # fmt: skip
        self.processor = SiglipImageProcessorPil(size={"height": SIZE, "width": SIZE},
                                                 image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip

    def save(self, folder: Path) -> Path:
        """Write the release: config.json, model.safetensors, tokenizer, preprocessor."""
        folder.mkdir(parents=True)
        state = {f"model.{k}": v for k, v in self.lm.model.state_dict().items()}
        state |= {f"lm_head.{k}": v for k, v in self.lm.lm_head.state_dict().items()}
        # Mipha's tower wrapper holds the transformer as `vision_model` (transformers 4.37's names).
        state |= {f"model.vision_tower.vision_model.{k}": v
                  for k, v in self.tower.state_dict().items()}  # fmt: skip
        state |= {f"model.mm_projector.{k}": v for k, v in self.projector.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        config = self.lm.config.to_dict() | {
            "model_type": "mipha_phi", "architectures": ["MiphaPhiForCausalLM"],
            "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
            "mm_use_im_patch_token": False, "freeze_vision_tower": False,
            "vision_config": {
                "vision_tower": self.tower_config.to_dict() | {
                    "model_type": "mipha_vision_model", "mm_vision_select_layer": -2,
                    "mm_vision_select_feature": "patch",
                    "vision_model_name_or_path": "google/siglip-so400m-patch14-384"},
                "mm_projector": {"mm_projector_type": "mlp2x_gelu", "mm_hidden_size": WIDTH,
                                 "hidden_size": WIDTH},
            },
        }  # fmt: skip
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        self.tokenizer.chat_template = None  # Mipha's (phi-2's) tokenizer has none
        self.tokenizer.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        return folder

    @torch.no_grad()
    def logits(self, image: Image.Image, question: str) -> torch.Tensor:
        """Mipha's logits for one question about ``image`` (conv_phi_v0, generation prompt)."""
        side = max(image.size)
        square = Image.new("RGB", (side, side), (127, 127, 127))  # int(0.5 * 255) per channel
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        pixels = self.processor(images=square, return_tensors="pt")["pixel_values"]
        hidden = self.tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        features = self.projector(hidden)[0]  # SigLIP has no CLS: every token is a patch
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"<image>\n{question}"}], tokenize=False,
            add_generation_prompt=True, chat_template=MIPHA_PHI_TEMPLATE,
        )  # fmt: skip
        before, after = prompt.split("<image>")  # tokenizer_image_token: chunks around it
        embed = self.lm.get_input_embeddings()
        ids = [self.tokenizer(c, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
               for c in (before, after)]  # fmt: skip
        embeds = torch.cat([embed(ids[0]), features, embed(ids[1])])[None]
        return self.lm(inputs_embeds=embeds).logits[0]
