"""Fused backbones: several encoders read the same image, features concatenated per patch.

This is Prismatic's DINOv2 + SigLIP recipe. Each encoder keeps its own preprocessing: the
fused ``image_transform`` concatenates the encoders' tensors along the channel axis, giving
``(3 * k, H, W)`` in the order of ``vision.encoders``, and ``forward`` splits
``pixel_values`` back into 3-channel chunks, one per encoder. The token grids must match, so
that token ``i`` of every encoder covers the same patch.

A fused option is one file: ``vision.encoders`` maps a key to a full sub-encoder spec
(``_target_`` of its builder, ``checkpoint``, ``twin``...). The option sets
``_recursive_: false`` so that Hydra hands those specs to ``build_fused_vision_encoder``
instead of building them with their real checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn

from msl_ablate.models.vision.base import VisionEncoder, option_file, reject_unused
from msl_ablate.models.vision.transforms import ResizeStrategy
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
        encoders: Key -> built encoder, in channel order.
        name: The option name, for error messages.

    Raises:
        ValueError: Fewer than two encoders, or their token grids differ (naming each
            encoder with its grid and token count).
    """

    def __init__(self, encoders: dict[str, VisionEncoder], name: str = "?"):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(
                f"vision.encoders needs at least two encoders to fuse, got {list(encoders)} "
                f"({option_file(name)})"
            )
        layouts = {key: (enc.grid_size, enc.num_tokens) for key, enc in encoders.items()}
        if len(set(layouts.values())) > 1:
            described = ", ".join(
                f"{key} ({getattr(encoders[key], 'name', type(encoders[key]).__name__)}): "
                f"{grid[0]}x{grid[1]} grid, {tokens} tokens"
                for key, (grid, tokens) in layouts.items()
            )
            raise ValueError(
                f"fused encoders must give the same token grid to concatenate per patch, got "
                f"{described}; pick encoders whose patch size divides vision.image_size alike "
                f"and the same drop_cls ({option_file(name)})"
            )
        self.name = name
        self.encoders = nn.ModuleDict(encoders)
        self._transform = FusedTransform([enc.image_transform for enc in encoders.values()])

    @property
    def embed_dim(self) -> int:
        return sum(enc.embed_dim for enc in self.encoders.values())

    @property
    def grid_size(self) -> tuple[int, int]:
        return next(iter(self.encoders.values())).grid_size

    @property
    def num_tokens(self) -> int:
        return next(iter(self.encoders.values())).num_tokens

    @property
    def blocks(self) -> nn.ModuleList:
        """Every encoder's used blocks, interleaved so the list ends with each encoder's last.

        With two encoders, ``partial`` with k trainable blocks trains the last k/2 of each; an
        encoder with fewer blocks drops out of the interleaving once it runs out.
        """
        per_encoder = [list(enc.blocks) for enc in self.encoders.values()]
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
                f"encoder {list(self.encoders)}), got {pixel_values.shape[1]}; were the images "
                "made by its image_transform?"
            )
        features = [enc(chunk) for enc, chunk in zip(self.encoders.values(), chunks, strict=True)]
        return torch.cat(features, dim=-1)  # (B, N, sum of D_v)


def _specs(encoders: Any, where: str) -> dict[str, dict]:
    """The sub-encoder specs as plain dicts, in order (``where``: for the error message)."""
    if isinstance(encoders, DictConfig):
        encoders = OmegaConf.to_container(encoders, resolve=True)
    if not isinstance(encoders, dict) or not encoders:
        raise ValueError(
            f"vision.encoders must map a key to a sub-encoder spec, got {encoders!r} ({where})"
        )
    return encoders


def joined_checkpoint(encoders: dict[str, dict]) -> str:
    """The fused option's ``checkpoint`` when each encoder loads its own real one."""
    return "+".join(str(spec["checkpoint"]) for spec in encoders.values())


def build_fused_vision_encoder(
    name: str,
    checkpoint: str,
    model_class: str,
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = True,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
    num_prefix_tokens: int | None = None,
    model_name: str | None = None,
    encoders: dict | None = None,
) -> VisionEncoder:
    """Build each sub-encoder with its own builder, then fuse them.

    Args:
        name: The option name.
        checkpoint: A folder with one sub-folder per encoder key (the twin's layout), or the
            ``+``-joined sub-checkpoints, meaning each encoder loads its own.
        model_class: The fusing class, called as ``cls(encoders, name)``.
        image_size: Input resolution, shared by every encoder.
        feature_layer: Default for sub-specs that do not set their own.
        drop_cls: Default for sub-specs that do not set their own.
        resize: Resize strategy, shared by every encoder.
        num_prefix_tokens: Must be null (set it per encoder).
        model_name: Must be null (set it per encoder).
        encoders: Key -> sub-encoder spec (``_target_``, ``name``, ``checkpoint``, ``twin``...).

    Returns:
        The fused encoder.

    Raises:
        ValueError: A bad checkpoint, or a sub-spec that sets a shared key.
    """
    reject_unused(
        "a fused encoder (set it per encoder under vision.encoders)",
        name,
        num_prefix_tokens=num_prefix_tokens,
        model_name=model_name,
    )
    specs = _specs(encoders, option_file(name))
    if Path(checkpoint).is_dir():
        sub_checkpoints = {key: str(Path(checkpoint) / key) for key in specs}
    elif checkpoint == joined_checkpoint(specs):
        sub_checkpoints = {key: spec["checkpoint"] for key, spec in specs.items()}
    else:
        raise ValueError(
            f"vision.checkpoint of a fused encoder must be a folder with sub-folders {list(specs)} "
            f"or {joined_checkpoint(specs)!r}, got {checkpoint!r} ({option_file(name)})"
        )
    built: dict[str, VisionEncoder] = {}
    for key, spec in specs.items():
        shared = [k for k in SHARED_KEYS if k in spec]
        if shared:
            raise ValueError(
                f"vision.encoders.{key} sets {shared}, which all encoders share: set vision."
                f"{shared[0]} instead ({option_file(name)})"
            )
        kwargs = {"feature_layer": feature_layer, "drop_cls": drop_cls}
        kwargs.update({k: v for k, v in spec.items() if k != "twin"})
        kwargs.update(
            checkpoint=sub_checkpoints[key],
            image_size=image_size,
            resize=ResizeStrategy(resize).value,
        )
        log.info("Instantiating fused sub-encoder %s <%s>", key, kwargs["_target_"])
        built[key] = instantiate(kwargs, _convert_="all")
    return get_class(model_class)(built, name)


def save_fused_twin(out_dir: Path, zoo_dir: Path, encoders: dict) -> None:
    """Build every sub-encoder's twin into ``out_dir/<key>``.

    Args:
        out_dir: Folder to write.
        zoo_dir: The zoo, passed on to the sub-twin builders.
        encoders: Key -> sub-encoder spec, each with its own ``twin``.

    Raises:
        ValueError: A sub-encoder without a twin.
    """
    for key, spec in _specs(encoders, "the fused twin").items():
        if not spec.get("twin"):
            raise ValueError(f"vision.encoders.{key} has no `twin:` to build offline")
        sub_dir = Path(out_dir) / key
        sub_dir.mkdir(parents=True, exist_ok=True)
        instantiate(spec["twin"], out_dir=sub_dir, zoo_dir=zoo_dir, _convert_="all")
