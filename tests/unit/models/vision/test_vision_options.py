"""Every vision option file: header, name, real checkpoint, and a VLM step through its twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from tests.helpers.options import chosen_options

from msl_ablate.config.components import components
from msl_ablate.config.compose import config_dir
from msl_ablate.models.assemble import build_vlm
from msl_ablate.models.zoo import resolve_checkpoint

VISION_DIR = config_dir() / "vision"
OPTIONS = chosen_options("vision")

# The real weights each option names (never loaded here: that would need the network).
REAL_CHECKPOINTS = {
    "siglip_so400m_p14_384": "google/siglip-so400m-patch14-384",
    "siglip_b16_224": "google/siglip-base-patch16-224",
    "clip_l14_336": "openai/clip-vit-large-patch14-336",
    "clip_b16": "openai/clip-vit-base-patch16",
    "dinov2_large": "facebook/dinov2-large",
    "dinov2_base": "facebook/dinov2-base",
    "dinov2_reg4_large": "facebook/dinov2-with-registers-large",
    "vit_large_in21k": "google/vit-large-patch16-224-in21k",
    "vit_base_in21k": "google/vit-base-patch16-224-in21k",
    "timm_vit_b16_in21k": "vit_base_patch16_224.augreg_in21k",
    "timm_siglip_b16_224": "vit_base_patch16_siglip_224.webli",
    "timm_dinov2_l14_reg4": "vit_large_patch14_reg4_dinov2.lvd142m",
    "openclip_vit_b16": "laion2b_s34b_b88k",
    "openclip_vit_l14_336": "openai",
    "dinov2_siglip_fused": [  # one per encoder, in channel order
        "vit_large_patch14_reg4_dinov2.lvd142m",
        "google/siglip-so400m-patch14-384",
    ],
}
BUILDERS = {
    "msl_ablate.models.vision.hf.build_hf_vision_encoder",
    "msl_ablate.models.vision.timm.build_timm_vision_encoder",
    "msl_ablate.models.vision.open_clip.build_open_clip_vision_encoder",
    "msl_ablate.models.vision.fused.build_fused_vision_encoder",
}


def test_every_required_option_and_source_exists():
    assert set(REAL_CHECKPOINTS) <= set(OPTIONS)
    targets = {OmegaConf.load(VISION_DIR / f"{name}.yaml")._target_ for name in OPTIONS}
    assert targets == BUILDERS


@pytest.mark.parametrize("name", OPTIONS)
def test_option_file_has_comment_name_and_twin(name: str):
    path = VISION_DIR / f"{name}.yaml"
    assert path.read_text().startswith("# "), f"{path} must start with a comment"
    spec = OmegaConf.load(path)
    assert spec.name == name
    parts = list(components(spec, "vision"))  # the option itself, or each fused encoder
    assert parts
    for _, part in parts:
        if "twin" in part:  # a random twin, written inline
            assert part.twin._target_.startswith("msl_ablate.models.vision.")
        else:  # a pretrained zoo recipe, pulled in as the twin (conf/zoo/vision)
            (entry,) = [d for d in spec.defaults if str(d).startswith("/zoo/vision/")]
            recipe = OmegaConf.load(config_dir() / f"{entry.split('@')[0].lstrip('/')}.yaml")
            assert entry.endswith("@twin") and recipe.model_class == part.model_class


def test_offline_twins_is_off_by_default(make_cfg):
    assert make_cfg("vision=clip_b16").offline_twins is False


@pytest.mark.parametrize("name", sorted(REAL_CHECKPOINTS))
def test_checkpoint_stays_the_real_id_without_offline_twins(option_cfg, tmp_path: Path, name: str):
    cfg = option_cfg(name)
    zoo = tmp_path / "zoo"
    resolved = [resolve_checkpoint(p, False, zoo) for _, p in components(cfg.vision, "vision")]
    expected = REAL_CHECKPOINTS[name]
    assert resolved == (expected if isinstance(expected, list) else [expected])
    assert not zoo.exists()  # no twin was built


def test_open_clip_options_name_their_architecture(option_cfg):
    assert option_cfg("openclip_vit_b16").vision.model_name == "ViT-B-16"
    assert option_cfg("openclip_vit_l14_336").vision.model_name == "ViT-L-14-336"


def _batch(vlm, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    """Two samples: text, the image placeholders, then two answer tokens with labels."""
    n, img = vlm.num_image_tokens, vlm.image_token_id
    input_ids = torch.tensor([[7, *[img] * n, 8, 9, 10]] * len(images))  # (B, n + 4)
    labels = torch.full_like(input_ids, -100)
    labels[:, -2:] = input_ids[:, -2:]
    pixel_values = torch.stack([vlm.vision.image_transform(im) for im in images])
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": pixel_values,  # (B, C, 64, 64)
    }


@pytest.mark.parametrize("name", OPTIONS)
def test_twin_vlm_forward_and_backward(option_cfg, name: str):
    cfg = option_cfg(name, image_size=64)
    for _, part in components(cfg.vision, "vision"):
        twin = Path(resolve_checkpoint(part, True, cfg.paths.zoo_dir, cfg.zoo.max_steps))
        assert twin.parent == Path(cfg.paths.zoo_dir).expanduser()
        label = part.twin.get("name", part.name)  # a zoo recipe's name, or the option's
        assert twin.name.startswith(f"{label}-") and any(twin.iterdir())

    torch.manual_seed(0)
    vlm = build_vlm(cfg)
    assert vlm.num_image_tokens == 16  # every option: a 4x4 patch grid at 64 px, prefix dropped
    images = [Image.new("RGB", (80, 48), (200, 30, 30)), Image.new("RGB", (40, 64), (20, 90, 220))]
    out = vlm(**_batch(vlm, images))
    assert torch.isfinite(out.loss)
    out.loss.backward()

    grads = [p.grad for p in vlm.projector.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    # `blocks` ends at the feature layer, so its last block is on the gradient path.
    last_block = vlm.vision.blocks[-1]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in last_block.parameters())
    # What a trained tower leaves frozen is exactly what got no gradient here.
    no_grad = {n for n, p in vlm.vision.named_parameters() if p.grad is None}
    assert set(vlm.vision.unread_parameters()) == no_grad
