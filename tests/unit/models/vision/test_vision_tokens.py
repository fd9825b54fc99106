"""Image-token counts, prefix tokens, feature layers and preprocessing of each weights source."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from msl_ablate.config.compose import compose
from msl_ablate.models.vision.open_clip import _tag_cfg
from msl_ablate.utils.errors import ConfigError

# Option -> patch size of its architecture (the real one; the twins keep it).
PATCH = {
    "clip_b16": 16,  # transformers
    "siglip_so400m_p14_384": 14,
    "dinov2_base": 14,
    "timm_vit_b16_in21k": 16,  # timm
    "timm_dinov2_l14_reg4": 14,
    "openclip_vit_b16": 16,  # open_clip
    "openclip_vit_l14_336": 14,
    "dinov2_siglip_fused": 14,  # fused (both encoders)
}
# Tokens at each option's own image_size: the numbers the option comments promise.
NATIVE_TOKENS = {
    "siglip_so400m_p14_384": 729,
    "siglip_b16_224": 196,
    "clip_l14_336": 576,
    "clip_b16": 196,
    "dinov2_large": 256,
    "dinov2_reg4_large": 256,
    "vit_large_in21k": 196,
    "timm_siglip_b16_224": 196,
    "timm_dinov2_l14_reg4": 256,
    "openclip_vit_l14_336": 576,
    "dinov2_siglip_fused": 729,
}
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGENET_MEAN = [0.485, 0.456, 0.406]


def _channels(encoder) -> int:
    return 3 * len(getattr(encoder, "encoders", [None]))


@pytest.mark.parametrize("name", sorted(PATCH))
@pytest.mark.parametrize("image_size", [48, 100])
def test_token_count_follows_resolution(make_encoder, name: str, image_size: int):
    encoder = make_encoder(name, image_size=image_size)
    side = image_size // PATCH[name]  # 48 -> 3 (both patch sizes); 100 -> 6 (p16) or 7 (p14)
    assert encoder.grid_size == (side, side)
    assert encoder.num_tokens == side**2
    pixel_values = torch.randn(2, _channels(encoder), image_size, image_size)
    assert encoder(pixel_values).shape == (2, side**2, encoder.embed_dim)


@pytest.mark.parametrize("name", sorted(NATIVE_TOKENS))
def test_native_resolution_token_count(make_encoder, name: str):
    encoder = make_encoder(name)
    assert encoder.num_tokens == NATIVE_TOKENS[name]
    pixel_values = encoder.image_transform(Image.new("RGB", (500, 300), (90, 140, 30)))
    with torch.no_grad():
        out = encoder(pixel_values[None])  # (1, C, image_size, image_size)
    assert out.shape == (1, NATIVE_TOKENS[name], encoder.embed_dim)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("clip_b16", 1),
        ("dinov2_reg4_large", 5),
        ("timm_dinov2_l14_reg4", 5),
        ("openclip_vit_b16", 1),
    ],
)
def test_drop_cls_false_keeps_every_prefix_token(make_encoder, name: str, prefix: int):
    kept = make_encoder(name, image_size=64, drop_cls=False)
    dropped = make_encoder(name, image_size=64)
    assert kept.num_tokens == 16 + prefix
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full, patches = kept(x), dropped(x)
    assert full.shape == (1, 16 + prefix, kept.embed_dim)
    torch.testing.assert_close(full[:, prefix:], patches)  # same weights: patches after prefix


def test_hf_wrong_prefix_count_is_caught_at_forward(make_encoder):
    encoder = make_encoder("dinov2_reg4_large", image_size=64, num_prefix_tokens=1)
    with pytest.raises(RuntimeError, match=r"returned 20 tokens, expected 16.*num_prefix_tokens"):
        encoder(torch.randn(1, 3, 64, 64))


def test_timm_prefix_count_is_checked_against_the_model(make_encoder, raises_cause):
    with raises_cause(ValueError, r"num_prefix_tokens=1 but .* has 5.*timm_dinov2_l14_reg4"):
        make_encoder("timm_dinov2_l14_reg4", image_size=64, num_prefix_tokens=1)


@pytest.mark.parametrize("name", ["clip_b16", "timm_vit_b16_in21k", "openclip_vit_b16"])
def test_blocks_stop_at_the_feature_layer(make_encoder, name: str):
    # -2 reads the output of the second-to-last block, -1 the last one's.
    second_to_last = make_encoder(name, image_size=32)
    last = make_encoder(name, image_size=32, feature_layer=-1)
    assert isinstance(second_to_last.blocks, nn.ModuleList)
    assert len(last.blocks) == len(second_to_last.blocks) + 1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(second_to_last(x), last(x))


def test_feature_layer_out_of_range_names_the_key(make_encoder, raises_cause):
    # clip_b16's twin is the zoo's tiny_clip_64: 4 blocks.
    with raises_cause(ValueError, r"vision.feature_layer=-6 .* 4 blocks.*-5..4"):
        make_encoder("clip_b16", image_size=32, feature_layer=-6)
    with raises_cause(ValueError, "vision.feature_layer=0 reads the patch embedding"):
        make_encoder("timm_vit_b16_in21k", image_size=32, feature_layer=0)


@pytest.mark.parametrize(
    ("name", "mean"),
    [
        ("clip_b16", OPENAI_MEAN),
        ("siglip_b16_224", [0.5, 0.5, 0.5]),
        ("dinov2_base", IMAGENET_MEAN),
        ("timm_dinov2_l14_reg4", IMAGENET_MEAN),
        ("timm_vit_b16_in21k", [0.5, 0.5, 0.5]),
        ("openclip_vit_b16", OPENAI_MEAN),
    ],
)
def test_mean_comes_from_the_checkpoint_preprocessing(make_encoder, name: str, mean: list[float]):
    encoder = make_encoder(name, image_size=32)
    torch.testing.assert_close(encoder.image_transform.mean.flatten(), torch.tensor(mean))
    assert encoder.image_transform.image_size == 32


def test_open_clip_openai_tag_uses_quick_gelu(make_encoder):
    # The real path reads the flag from the tag's cfg; the twin records it in its model_cfg.
    assert _tag_cfg("ViT-L-14-336", "openai")["quick_gelu"] is True
    assert not _tag_cfg("ViT-B-16", "laion2b_s34b_b88k").get("quick_gelu", False)
    openai = make_encoder("openclip_vit_l14_336", image_size=28)
    laion = make_encoder("openclip_vit_b16", image_size=32)
    assert type(openai.blocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert type(laion.blocks[0].mlp.gelu) is nn.GELU


def test_another_backends_field_is_rejected_when_composing():
    # Each backend has its own schema: open_clip's model_name is no key of a transformers option.
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'vision.model_name'. Valid keys in vision: .*num_prefix_tokens",
    ):
        compose(["vision=clip_b16", "vision.model_name=ViT-B-16"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'vision.num_prefix_tokens'. Valid keys in vision: .*model_name",
    ):
        compose(["vision=openclip_vit_b16", "vision.num_prefix_tokens=1"])


def test_model_class_is_checked(make_encoder, raises_cause):
    with raises_cause(TypeError, r"expected vision.model_class=torch.nn.Linear"):
        make_encoder("timm_vit_b16_in21k", image_size=32, model_class="torch.nn.Linear")


@pytest.mark.parametrize("name", ["siglip_b16_224", "clip_b16", "dinov2_base", "vit_large_in21k"])
@pytest.mark.parametrize("feature_layer", [-2, 1])
def test_a_transformers_tower_ends_at_its_feature_layer_with_the_same_features(
    make_encoder, name: str, feature_layer: int
):
    from hydra.utils import get_class

    encoder = make_encoder(name, image_size=32, feature_layer=feature_layer)
    folder = encoder.model.name_or_path
    full = get_class(f"transformers.{type(encoder.model).__name__}").from_pretrained(folder)
    depth = full.config.num_hidden_layers
    kept = feature_layer % (depth + 1)
    assert kept < depth
    # Only the blocks that feed the features are left, and SigLIP's pooling head is gone.
    layers = [m for m in encoder.model.modules() if isinstance(m, nn.ModuleList)]
    assert [len(m) for m in layers] == [kept]
    assert not hasattr(getattr(encoder.model, "vision_model", encoder.model), "head")
    x = torch.randn(2, 3, 32, 32)
    kwargs = {"interpolate_pos_encoding": True} if name != "dinov2_base" else {}
    with torch.no_grad():
        expected = full(pixel_values=x, output_hidden_states=True, **kwargs).hidden_states
        got = encoder(x)
    reference = expected[feature_layer][:, encoder.num_prefix_tokens if encoder.drop_cls else 0 :]
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)


def _full_tower(option_cfg, name: str) -> nn.Module:
    """The option's twin as its library builds it, whole: every block, norm and head."""
    import open_clip
    import timm

    from msl_ablate.models.zoo import resolve_checkpoint

    cfg = option_cfg(name, image_size=32)
    folder = resolve_checkpoint(cfg.vision, True, cfg.paths.zoo_dir, cfg.zoo.max_steps)
    if name.startswith("timm_"):
        return timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0,
                                 img_size=32)  # fmt: skip
    return open_clip.create_model(f"local-dir:{folder}", force_image_size=32).visual


@pytest.mark.parametrize(
    "name",
    ["timm_vit_b16_in21k", "timm_siglip_b16_224", "timm_dinov2_l14_reg4", "openclip_vit_b16"],
)
@pytest.mark.parametrize("feature_layer", [-2, 1])
def test_a_timm_or_open_clip_tower_ends_at_its_feature_layer_with_the_same_features(
    option_cfg, make_encoder, name: str, feature_layer: int
):
    encoder = make_encoder(name, image_size=32, feature_layer=feature_layer, drop_cls=False)
    full = _full_tower(option_cfg, name)
    full.eval()
    blocks = full.blocks if hasattr(full, "blocks") else full.transformer.resblocks
    kept = feature_layer % (len(blocks) + 1)
    assert kept < len(blocks)
    # Only the blocks that feed the features are left; no norm, pooling head or projection.
    assert len(encoder.blocks) == kept
    left = {n.split(".")[1] for n, _ in encoder.named_parameters()}
    assert not left & {"norm", "fc_norm", "attn_pool", "head", "ln_post", "proj"}, left
    # The reference: the full tower run to its end, the kept last block's output caught by a hook.
    seen = []
    blocks[kept - 1].register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full(x)
        got = encoder(x)
    torch.testing.assert_close(got, seen[0], rtol=0, atol=1e-6)
