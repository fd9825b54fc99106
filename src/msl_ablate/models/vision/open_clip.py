"""Vision towers from open_clip (OpenAI and LAION CLIP ViTs), and their twins.

A real checkpoint is an open_clip architecture (``vision.model_name``, e.g. ``ViT-B-16``) plus
a pretrained tag (``vision.checkpoint``, e.g. ``laion2b_s34b_b88k``) or a weights file. A twin
is a folder in open_clip's own Hub format: ``open_clip_config.json`` (the architecture's
``model_cfg`` shrunk, and the tag's ``preprocess_cfg`` with mean/std) plus
``open_clip_model.safetensors``. It is read back as ``local-dir:<folder>`` by the same
``open_clip.create_model`` call. Only the image tower is kept; the text tower is dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from hydra.utils import get_class
from safetensors.torch import save_file
from torch import nn

from msl_ablate.config.enums import ResizeStrategy
from msl_ablate.models.vision.base import (
    VisionEncoder,
    blocks_feeding,
    check_token_count,
    option_file,
)
from msl_ablate.models.vision.transforms import ImageTransform
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class OpenCLIPVisionEncoder(VisionEncoder):
    """An open_clip ``VisionTransformer`` read at one block's output.

    Args:
        visual: ``model.visual`` of an open_clip CLIP, built at the target image size (its
            position embedding was resized from the checkpoint's grid when loading).
        feature_layer: Hidden-state index, transformers-style (-2: second-to-last block).
        drop_cls: Drop the class token.
        transform: The image transform built from the checkpoint's preprocess cfg.
        name: The option name, for error messages.

    Raises:
        ValueError: ``feature_layer`` reads the embedding.
    """

    def __init__(
        self,
        visual: nn.Module,
        feature_layer: int,
        drop_cls: bool,
        transform: ImageTransform,
        name: str = "?",
    ):
        super().__init__()
        self.visual = visual
        self.drop_cls = drop_cls
        self.name = name
        self._transform = transform
        self.num_prefix_tokens = 1  # open_clip's VisionTransformer always prepends one CLS
        depth = len(visual.transformer.resblocks)
        self._num_used_blocks = blocks_feeding(feature_layer, depth, name)
        if self._num_used_blocks == 0:
            raise ValueError(
                f"vision.feature_layer={feature_layer} reads the patch embedding; open_clip "
                f"returns block outputs, so it must select block 1 or later ({option_file(name)})"
            )
        # open_clip's own cut: the blocks after the feature layer, ln_post and the projection
        # are removed, so they are neither run nor kept.
        visual.prune_intermediate_layers([self._num_used_blocks - 1], prune_norm=True)

    @property
    def embed_dim(self) -> int:
        return self.visual.transformer.width

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.visual.grid_size)

    @property
    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList(self.visual.transformer.resblocks)  # cut at the feature layer

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # The last kept block's output (before ``ln_post``), as transformers' hidden_states.
        out = self.visual.forward_intermediates(
            pixel_values,
            indices=[self._num_used_blocks - 1],
            stop_early=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=not self.drop_cls,
        )
        features = out["image_intermediates"][0]  # (B, N_patch, D_v)
        if not self.drop_cls:
            prefix = out["image_intermediates_prefix"][0]  # (B, 1, D_v)
            features = torch.cat([prefix, features], dim=1)  # (B, 1 + N_patch, D_v)
        check_token_count(features, self, f"check vision.drop_cls ({option_file(self.name)})")
        return features


def _tag_cfg(model_name: str, tag: str) -> dict:
    """The pretrained cfg of a tag (mean/std, quick_gelu), from open_clip's built-in table."""
    return dict(open_clip.get_pretrained_cfg(model_name, tag) or {})


def build_open_clip_vision_encoder(
    name: str,
    checkpoint: str,
    model_class: str,
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = False,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
    model_name: str | None = None,
) -> OpenCLIPVisionEncoder:
    """Create an open_clip model with pretrained weights at ``image_size`` and keep its image tower.

    Args:
        name: The option name (for logs).
        checkpoint: Pretrained tag of ``model_name`` (``openai``, ``laion2b_s34b_b88k``), a
            weights file, or a twin folder (loaded as ``local-dir:``).
        model_class: Dotted class ``model.visual`` must be, e.g.
            ``open_clip.transformer.VisionTransformer`` (timm-backed towers are not supported).
        image_size: Input resolution; open_clip resizes the position embedding at load.
        feature_layer: Hidden-state index (transformers-style).
        drop_cls: Drop the class token.
        resize: Resize strategy.
        model_name: open_clip architecture, e.g. ``ViT-B-16`` (a twin folder carries its own).

    Returns:
        The encoder.

    Raises:
        ValueError: ``model_name`` is missing for a tag or file checkpoint.
        TypeError: ``model.visual`` is not a ``model_class``.
    """
    if Path(checkpoint).is_dir():
        # The twin's model_cfg already records quick_gelu, and its preprocess_cfg mean/std.
        source, pretrained, quick_gelu = f"local-dir:{checkpoint}", None, False
    elif model_name:
        # Gotcha: OpenAI's weights were trained with QuickGELU, but the plain `ViT-B-16` config
        # builds nn.GELU and open_clip only warns; take the flag from the tag's own cfg.
        source, pretrained = model_name, checkpoint
        quick_gelu = bool(_tag_cfg(model_name, checkpoint).get("quick_gelu", False))
    else:
        raise ValueError(
            f"vision.model_name must name an open_clip architecture (e.g. ViT-B-16) for "
            f"checkpoint {checkpoint!r} ({option_file(name)})"
        )
    log.info("Creating open_clip vision encoder %s from %s (%s)", name, source, pretrained)
    model = open_clip.create_model(
        source,
        pretrained=pretrained,
        force_quick_gelu=quick_gelu,
        force_image_size=image_size,
        require_pretrained=True,
    )
    visual = model.visual
    expected = get_class(model_class)
    if not isinstance(visual, expected):
        raise TypeError(
            f"open_clip built a {type(visual).__name__} image tower, expected "
            f"vision.model_class={model_class} ({option_file(name)})"
        )
    preprocess = visual.preprocess_cfg  # the tag's (or twin's) mean/std
    transform = ImageTransform(image_size, preprocess["mean"], preprocess["std"], resize)
    return OpenCLIPVisionEncoder(visual, feature_layer, drop_cls, transform, name)


def save_open_clip_twin(
    out_dir: Path,
    zoo_dir: Path,
    model_name: str,
    pretrained: str,
    vision_cfg: dict,
    text_cfg: dict,
    embed_dim: int,
    seed: int = 0,
) -> None:
    """Save a randomly initialised, shrunk open_clip model in open_clip's Hub folder format.

    Args:
        out_dir: Folder to write.
        zoo_dir: The zoo (unused by vision twins).
        model_name: The real architecture, e.g. ``ViT-B-16``; its config is the starting point.
        pretrained: The real tag; its mean/std and QuickGELU flag go in the twin.
        vision_cfg: Overrides of the architecture's ``vision_cfg`` (width, layers, ...).
        text_cfg: Overrides of its ``text_cfg`` (the text tower is built but never used).
        embed_dim: Joint embedding width.
        seed: Initialisation seed.

    Raises:
        ValueError: Unknown architecture or tag (naming the valid tags).
    """
    model_cfg = open_clip.get_model_config(model_name)
    tag_cfg = _tag_cfg(model_name, pretrained)
    if model_cfg is None or not tag_cfg:
        raise ValueError(
            f"twin.model_name={model_name!r} / twin.pretrained={pretrained!r} is not a known "
            f"open_clip model and tag; tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    model_cfg["vision_cfg"].update(vision_cfg)
    model_cfg["text_cfg"].update(text_cfg)
    model_cfg["embed_dim"] = embed_dim
    model_cfg["quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
    preprocess_cfg = {key: tag_cfg[key] for key in PREPROCESS_KEYS if key in tag_cfg}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{out_dir}", load_weights=False)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, out_dir / "open_clip_model.safetensors")
