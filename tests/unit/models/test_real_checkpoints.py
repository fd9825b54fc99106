"""Real checkpoints from the Hugging Face hub: one per vision source and one LM (opt-in).

Run with ``pytest -m network`` on a machine with internet access; ``make test`` skips them.
"""

from __future__ import annotations

import pytest

from msl_ablate.models.assemble import build_vlm

pytestmark = pytest.mark.network

REAL = [
    ("vision=siglip_b16_224", 196),  # transformers
    ("vision=timm_vit_b16_in21k", 196),  # timm
    ("vision=openclip_vit_b16", 196),  # open_clip
]


@pytest.mark.parametrize(("option", "tokens"), REAL, ids=[o for o, _ in REAL])
def test_real_vision_checkpoint_loads(make_cfg, option, tokens):
    vlm = build_vlm(make_cfg(option, "lm=tiny_phi"))
    assert vlm.num_image_tokens == tokens
    assert vlm.vision.embed_dim == 768


def test_real_lm_checkpoint_loads_with_image_token(make_cfg):
    vlm = build_vlm(make_cfg("vision=tiny_siglip", "lm=qwen2_15b_instruct"))
    assert vlm.lm.tokenizer.convert_tokens_to_ids("<image>") == vlm.image_token_id
    assert vlm.lm.embed_dim == 1536
