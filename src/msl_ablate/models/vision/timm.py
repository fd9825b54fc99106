"""Vision encoders from timm (ViT family: AugReg in21k, SigLIP, DINOv2 with registers), and twins.

A real checkpoint is a timm model name with its pretrained tag, e.g.
``vit_base_patch16_224.augreg_in21k`` (or ``hf-hub:timm/...``). A twin is a folder in timm's
own Hub format, written by ``timm.models.save_for_hf``: ``config.json`` (architecture, its
arguments, and the tag's pretrained cfg with mean/std) plus ``model.safetensors``. It is
read back as ``local-dir:<folder>`` by the same ``timm.create_model(..., pretrained=True)``
call that loads the real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from hydra.utils import get_class
from timm.data import resolve_model_data_config
from timm.models import save_for_hf
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


class TimmVisionEncoder(VisionEncoder):
    """A timm ``VisionTransformer`` read at one block's output.

    Args:
        model: The timm model, created at the target ``img_size`` (its position embedding was
            resampled from the checkpoint's grid when loading).
        feature_layer: Hidden-state index, transformers-style (-2: second-to-last block).
        drop_cls: Drop the prefix tokens (CLS, registers); timm knows how many there are.
        transform: The image transform built from the checkpoint's pretrained cfg.
        num_prefix_tokens: Expected prefix count, checked against timm's; None: timm's.
        name: The option name, for error messages.

    Raises:
        ValueError: ``num_prefix_tokens`` disagrees with the model, or ``feature_layer`` reads
            the patch embedding (timm returns block outputs only).
    """

    def __init__(
        self,
        model: nn.Module,
        feature_layer: int,
        drop_cls: bool,
        transform: ImageTransform,
        num_prefix_tokens: int | None = None,
        name: str = "?",
    ):
        super().__init__()
        self.model = model
        self.drop_cls = drop_cls
        self.name = name
        self._transform = transform
        self.num_prefix_tokens = model.num_prefix_tokens  # CLS + registers (+ distillation)
        if num_prefix_tokens is not None and num_prefix_tokens != self.num_prefix_tokens:
            raise ValueError(
                f"vision.num_prefix_tokens={num_prefix_tokens} but {type(model).__name__} has "
                f"{self.num_prefix_tokens}; set it to null or {self.num_prefix_tokens} "
                f"({option_file(name)})"
            )
        self._num_used_blocks = blocks_feeding(feature_layer, len(model.blocks), name)
        if self._num_used_blocks == 0:
            raise ValueError(
                f"vision.feature_layer={feature_layer} reads the patch embedding; timm encoders "
                f"return block outputs, so it must select block 1 or later ({option_file(name)})"
            )
        self._grid = tuple(model.patch_embed.grid_size)
        # timm's own cut: the blocks after the feature layer, the final norm and the pooling
        # head (SigLIP's attention pool) are removed, so they are neither run nor kept.
        model.prune_intermediate_layers([self._num_used_blocks - 1], prune_norm=True)

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def grid_size(self) -> tuple[int, int]:
        return self._grid

    @property
    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList(self.model.blocks)  # cut at the feature layer

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        keep_prefix = not self.drop_cls and self.num_prefix_tokens > 0
        # norm=False: the last kept block's output, as transformers' hidden_states.
        (out,) = self.model.forward_intermediates(
            pixel_values,
            indices=[self._num_used_blocks - 1],
            return_prefix_tokens=keep_prefix,
            norm=False,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )
        if keep_prefix:
            patches, prefix = out  # (B, N_patch, D_v), (B, P, D_v)
            features = torch.cat([prefix, patches], dim=1)  # (B, P + N_patch, D_v)
        else:
            features = out  # (B, N_patch, D_v)
        check_token_count(features, self, f"check vision.drop_cls ({option_file(self.name)})")
        return features


def build_timm_vision_encoder(
    name: str,
    checkpoint: str,
    model_class: str,
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = False,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
    num_prefix_tokens: int | None = None,
) -> TimmVisionEncoder:
    """Create a timm vision transformer with pretrained weights, at ``image_size``.

    Args:
        name: The option name (for logs).
        checkpoint: timm name with tag (``vit_base_patch16_224.augreg_in21k``), ``hf-hub:`` id,
            or a twin folder (loaded as ``local-dir:``).
        model_class: Dotted class the model must be, e.g.
            ``timm.models.vision_transformer.VisionTransformer`` (checked, so a twin cannot
            drift to another architecture).
        image_size: Input resolution; timm resamples the position embedding at load.
        feature_layer: Hidden-state index (transformers-style).
        drop_cls: Drop the prefix tokens.
        resize: Resize strategy.
        num_prefix_tokens: Expected prefix count (checked), or null to take timm's.

    Returns:
        The encoder.

    Raises:
        TypeError: The created model is not a ``model_class``.
    """
    source = f"local-dir:{checkpoint}" if Path(checkpoint).is_dir() else checkpoint
    log.info("Creating timm vision encoder %s from %s", name, source)
    # num_classes=0: the classifier head is never used; timm drops its weights when loading.
    model = timm.create_model(source, pretrained=True, num_classes=0, img_size=image_size)
    expected = get_class(model_class)
    if not isinstance(model, expected):
        raise TypeError(
            f"timm created a {type(model).__name__} from {checkpoint!r}, expected "
            f"vision.model_class={model_class} ({option_file(name)})"
        )
    data_cfg = resolve_model_data_config(model)  # the checkpoint's own mean/std
    transform = ImageTransform(image_size, data_cfg["mean"], data_cfg["std"], resize)
    return TimmVisionEncoder(model, feature_layer, drop_cls, transform, num_prefix_tokens, name)


def save_timm_twin(
    out_dir: Path, zoo_dir: Path, model_name: str, model_args: dict, seed: int = 0
) -> None:
    """Save a randomly initialised, shrunk timm model in timm's Hub folder format.

    Args:
        out_dir: Folder to write (``config.json`` + ``model.safetensors``).
        zoo_dir: The zoo (unused by vision twins).
        model_name: timm name with tag; the tag's pretrained cfg (mean/std) goes in the twin.
        model_args: Architecture overrides (``depth``, ``embed_dim``, ``num_heads``, ...).
        seed: Initialisation seed.
    """
    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=0, **model_args)
    save_for_hf(model, out_dir, safe_serialization=True)
