"""Fused backbones: several encoders read the same image, features concatenated per patch.

This is Prismatic's DINOv2 + SigLIP recipe. Each encoder keeps its own preprocessing: the
fused ``image_transform`` concatenates the encoders' tensors along the channel axis, giving
``(3 * k, H, W)`` in the order of ``vision.encoders``, and ``forward`` splits
``pixel_values`` back into 3-channel chunks, one per encoder. The token grids must match, so
that token ``i`` of every encoder covers the same patch.

A fused option is one file: ``vision.encoders`` lists full vision options (``_target_`` of
their builder, ``checkpoint``, ``twin``...), each resolved like any other option (its own
checkpoint or twin, ``models/zoo.py``). The option sets ``_recursive_: false`` so that Hydra
hands those specs to ``build_fused_vision_encoder``, which builds them with the shared keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate
from PIL import Image
from torch import nn

from msl_ablate.config.enums import ResizeStrategy
from msl_ablate.models.vision.base import VisionEncoder, option_file
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

SHARED_KEYS = ("image_size", "resize")  # one image goes to every encoder


class FusedTransform:
    """Apply each encoder's transform and concatenate along channels: ``(3 * k, H, W)``."""

    def __init__(self, transforms: list[Callable[[Image.Image], torch.Tensor]]):
        self.transforms = transforms

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.cat([transform(image) for transform in self.transforms], dim=0)


class FusedVisionEncoder(VisionEncoder):
    """Concatenate the patch features of several encoders that share a token grid.

    Args:
        encoders: The built encoders, in channel order.
        name: The option name, for error messages.

    Raises:
        ValueError: Fewer than two encoders, or their token grids differ (naming each
            encoder with its grid and token count).
    """

    def __init__(self, encoders: list[VisionEncoder], name: str = "?"):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(
                f"vision.encoders needs at least two encoders to fuse, got {len(encoders)} "
                f"({option_file(name)})"
            )
        layouts = [(enc.grid_size, enc.num_tokens) for enc in encoders]
        if len(set(layouts)) > 1:
            described = ", ".join(
                f"vision.encoders[{i}] ({getattr(enc, 'name', type(enc).__name__)}): "
                f"{grid[0]}x{grid[1]} grid, {tokens} tokens"
                for i, (enc, (grid, tokens)) in enumerate(zip(encoders, layouts, strict=True))
            )
            raise ValueError(
                f"fused encoders must give the same token grid to concatenate per patch, got "
                f"{described}; pick encoders whose patch size divides vision.image_size alike "
                f"and the same drop_cls ({option_file(name)})"
            )
        self.name = name
        self.encoders = nn.ModuleList(encoders)
        self._transform = FusedTransform([enc.image_transform for enc in encoders])

    @property
    def embed_dim(self) -> int:
        return sum(enc.embed_dim for enc in self.encoders)

    @property
    def grid_size(self) -> tuple[int, int]:
        return next(iter(self.encoders)).grid_size

    @property
    def num_tokens(self) -> int:
        return next(iter(self.encoders)).num_tokens

    @property
    def blocks(self) -> nn.ModuleList:
        """Every encoder's used blocks, interleaved so the list ends with each encoder's last.

        With two encoders, ``partial`` with k trainable blocks trains the last k/2 of each; an
        encoder with fewer blocks drops out of the interleaving once it runs out.
        """
        per_encoder = [list(enc.blocks) for enc in self.encoders]
        from_last = [
            blocks[-1 - depth]
            for depth in range(max(len(blocks) for blocks in per_encoder))
            for blocks in reversed(per_encoder)
            if depth < len(blocks)
        ]
        return nn.ModuleList(reversed(from_last))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        chunks = pixel_values.split(3, dim=1)  # k x (B, 3, H, W)
        if len(chunks) != len(self.encoders) or chunks[-1].shape[1] != 3:
            raise RuntimeError(
                f"fused encoder {self.name} expects {3 * len(self.encoders)} channels (3 per "
                f"encoder), got {pixel_values.shape[1]}; were the images "
                "made by its image_transform?"
            )
        features = [enc(chunk) for enc, chunk in zip(self.encoders, chunks, strict=True)]
        return torch.cat(features, dim=-1)  # (B, N, sum of D_v)


def build_fused_vision_encoder(
    name: str,
    encoders: list[dict[str, Any]],
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = True,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
) -> FusedVisionEncoder:
    """Build each encoder with its own builder at the shared resolution, then fuse them.

    Args:
        name: The option name.
        encoders: Vision option specs (``_target_``, ``name``, ``checkpoint``, ...), their
            checkpoints already resolved (``models/zoo.py``).
        image_size: Input resolution, shared by every encoder.
        feature_layer: Default for encoders that do not set their own.
        drop_cls: Default for encoders that do not set their own.
        resize: Resize strategy, shared by every encoder.

    Returns:
        The fused encoder.

    Raises:
        ValueError: An encoder sets a shared key.
    """
    built: list[VisionEncoder] = []
    for i, spec in enumerate(encoders):
        shared = [k for k in SHARED_KEYS if k in spec]
        if shared:
            raise ValueError(
                f"vision.encoders[{i}] sets {shared}, which all encoders share: set vision."
                f"{shared[0]} instead ({option_file(name)})"
            )
        kwargs = {"feature_layer": feature_layer, "drop_cls": drop_cls, **spec}
        kwargs.update(image_size=image_size, resize=ResizeStrategy(resize).value)
        log.info("Instantiating fused encoder %d <%s>", i, kwargs["_target_"])
        built.append(instantiate(kwargs, _convert_="all"))
    return FusedVisionEncoder(built, name)
