"""The fused DINOv2 + SigLIP backbone: per-patch concatenation, split transform, grid check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from msl_ablate.models.assemble import resolved_checkpoints
from msl_ablate.models.vision.fused import FusedVisionEncoder

FUSED = "dinov2_siglip_fused"


def test_features_concatenate_each_encoder_on_its_own_channels(make_encoder):
    fused = make_encoder(FUSED, image_size=56)
    dinov2, siglip = fused.encoders
    assert fused.embed_dim == dinov2.embed_dim + siglip.embed_dim == 64 + 32
    assert fused.grid_size == (4, 4) and fused.num_tokens == 16

    image = Image.new("RGB", (70, 50), (250, 120, 10))
    pixel_values = fused.image_transform(image)  # (6, 56, 56): DINOv2's channels, then SigLIP's
    assert pixel_values.shape == (6, 56, 56)
    torch.testing.assert_close(pixel_values[:3], dinov2.image_transform(image))
    torch.testing.assert_close(pixel_values[3:], siglip.image_transform(image))
    assert not torch.allclose(pixel_values[:3], pixel_values[3:])  # different mean/std

    with torch.no_grad():
        features = fused(pixel_values[None])  # (1, 16, 96)
        torch.testing.assert_close(features[..., :64], dinov2(pixel_values[None, :3]))
        torch.testing.assert_close(features[..., 64:], siglip(pixel_values[None, 3:]))


def test_grid_mismatch_names_both_encoders_and_grids(make_encoder, raises_cause):
    # SigLIP twin with patch 16: at 56 px it gives 3x3 while DINOv2 (patch 14) gives 4x4.
    with raises_cause(
        ValueError,
        r"vision.encoders\[0\] \(timm_dinov2_l14_reg4\): 4x4 grid, 16 tokens, "
        r"vision.encoders\[1\] \(siglip_so400m_p14_384\): 3x3 grid, 9 tokens",
    ):
        make_encoder(FUSED, image_size=56, **{"encoders.1.twin.config.patch_size": 16})


def test_grid_mismatch_of_two_built_encoders(make_encoder):
    clip, dinov2 = (
        make_encoder("clip_b16", image_size=56),
        make_encoder("dinov2_base", image_size=56),
    )
    with pytest.raises(
        ValueError, match=r"\[0\] \(clip_b16\): 3x3 grid.*\[1\] \(dinov2_base\): 4x4"
    ):
        FusedVisionEncoder([clip, dinov2], name="test")


def test_wrong_channel_count_is_explained(make_encoder):
    fused = make_encoder(FUSED, image_size=28)
    with pytest.raises(RuntimeError, match=r"expects 6 channels .*got 3"):
        fused(torch.zeros(1, 3, 28, 28))


def test_blocks_interleave_from_the_end(make_encoder):
    fused = make_encoder(FUSED, image_size=28, feature_layer=-1)  # both twins: 2 blocks used
    dinov2, siglip = (list(enc.blocks) for enc in fused.encoders)
    assert len(dinov2) == len(siglip) == 2
    assert list(fused.blocks) == [dinov2[0], siglip[0], dinov2[1], siglip[1]]


def test_shared_keys_cannot_be_set_per_encoder(make_encoder, raises_cause):
    with raises_cause(ValueError, r"vision.encoders\[1\] sets \['image_size'\].*vision.image_size"):
        make_encoder(FUSED, **{"encoders.1.image_size": 64})


def test_each_encoder_resolves_its_own_twin(option_cfg):
    twins = resolved_checkpoints(option_cfg(FUSED))  # offline_twins=true
    assert [k for k in twins if k.startswith("vision")] == [
        "vision.encoders[0]",
        "vision.encoders[1]",
    ]
    assert (Path(twins["vision.encoders[0]"]) / "config.json").is_file()  # timm's folder format
    assert (Path(twins["vision.encoders[1]"]) / "preprocessor_config.json").is_file()
