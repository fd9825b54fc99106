"""Vision encoders from transformers checkpoints (SigLIP, CLIP, DINOv2, ViT), and their twins."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn
from transformers import AutoImageProcessor

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


def _blocks_path(model: nn.Module, depth: int, name: str) -> str:
    """The dotted path of the block list: the one ``ModuleList`` with ``depth`` entries.

    transformers names it differently per family (``vision_model.encoder.layers`` for CLIP and
    SigLIP, ``encoder.layer`` for ViT and DINOv2); looking it up by shape avoids a table of names.
    """
    paths = [
        path
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == depth
    ]
    if len(paths) != 1:
        raise RuntimeError(
            f"cannot locate the transformer blocks of {type(model).__name__}: expected exactly one "
            f"nn.ModuleList with config.num_hidden_layers={depth} entries, found {paths} "
            f"({option_file(name)})"
        )
    return paths[0]


class HFVisionEncoder(VisionEncoder):
    """A transformers vision tower read at one hidden layer.

    Args:
        model: A transformers vision model (``SiglipVisionModel``, ``CLIPVisionModel``, ...).
        image_size: Input resolution; position embeddings are interpolated when it differs
            from the checkpoint's.
        feature_layer: Index into ``hidden_states`` (-2: second-to-last block, as LLaVA).
        drop_cls: Drop the prefix tokens (CLS, registers) and keep only patch tokens.
        transform: The image transform built from the checkpoint's processor config.
        num_prefix_tokens: Prefix tokens before the patches; None: 1 if ``drop_cls`` else 0.
        name: The option name, for error messages.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        feature_layer: int,
        drop_cls: bool,
        transform: ImageTransform,
        num_prefix_tokens: int | None = None,
        name: str = "?",
    ):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.feature_layer = feature_layer
        self.drop_cls = drop_cls
        self.num_prefix_tokens = (
            (1 if drop_cls else 0) if num_prefix_tokens is None else num_prefix_tokens
        )
        self.name = name
        self._transform = transform
        config = model.config
        side = image_size // config.patch_size
        self._grid = (side, side)
        # A path, not the module: a second attribute would duplicate its keys in state_dict.
        self._blocks_path, self._num_used_blocks = cut_tower(model, feature_layer, name)
        # CLIP, SigLIP and ViT interpolate only when asked; DINOv2 always does and has no flag.
        self._forward_kwargs: dict[str, Any] = {}
        accepts = inspect.signature(model.forward).parameters
        if image_size != config.image_size and "interpolate_pos_encoding" in accepts:
            self._forward_kwargs["interpolate_pos_encoding"] = True

    @property
    def embed_dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self._grid

    @property
    def blocks(self) -> nn.ModuleList:
        layers = self.model.get_submodule(self._blocks_path)
        return nn.ModuleList(list(layers)[: self._num_used_blocks])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(
            pixel_values=pixel_values, output_hidden_states=True, **self._forward_kwargs
        )
        # The tower ends at the feature layer: its last hidden state is the one asked for.
        features = out.hidden_states[self._num_used_blocks]  # (B, P + N_patch, D_v)
        if self.drop_cls:
            features = features[:, self.num_prefix_tokens :]  # (B, N_patch, D_v)
        check_token_count(
            features,
            self,
            f"check vision.num_prefix_tokens and vision.drop_cls ({option_file(self.name)})",
        )
        return features


def cut_tower(model: nn.Module, feature_layer: int, name: str = "?") -> tuple[str, int]:
    """End a transformers vision model at its feature layer (in place).

    Returns:
        The dotted path of its block list and how many blocks it keeps.
    """
    depth = model.config.num_hidden_layers
    path = _blocks_path(model, depth, name)
    keep = blocks_feeding(feature_layer, depth, name)
    _drop_blocks_after(model, path, keep)
    _drop_pooling_head(model)
    return path, keep


def _drop_blocks_after(model: nn.Module, blocks_path: str, keep: int) -> None:
    """Cut the tower after the block that gives the features (LLaVA reads the second to last).

    transformers' vision models run every block, then a final norm and, in SigLIP, an
    attention-pooling head, though the features are read before them; the blocks after the
    feature layer cost a share of the tower's time for nothing. The final norm stays (one
    LayerNorm); SigLIP's head is removed at load (``_drop_pooling_head``).
    """
    parent_path, _, attr = blocks_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList(list(getattr(parent, attr))[:keep]))


def _drop_pooling_head(model: nn.Module) -> None:
    """Remove SigLIP's attention-pooling head: it runs after the blocks, on every image, and
    its output is never read. Removed after loading, so loading reports no unused weights."""
    for module in model.modules():
        if getattr(module, "use_head", False) and isinstance(
            getattr(module, "head", None), nn.Module
        ):
            module.use_head = False  # transformers' SigLIP checks it before calling the head
            del module.head


def build_hf_vision_encoder(
    name: str,
    checkpoint: str,
    model_class: str,
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = False,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
    num_prefix_tokens: int | None = None,
) -> HFVisionEncoder:
    """Load a transformers vision tower and its preprocessing from a hub id or folder.

    Args:
        name: The option name (for logs).
        checkpoint: Hub id or local folder for ``from_pretrained``.
        model_class: Dotted path of the transformers class, e.g. ``transformers.SiglipVisionModel``.
        image_size: Input resolution.
        feature_layer: Hidden layer to read.
        drop_cls: Whether to drop the prefix tokens (CLS, registers).
        resize: Resize strategy.
        num_prefix_tokens: Prefix tokens the model emits (DINOv2 with 4 registers: 5).

    Returns:
        The encoder.
    """
    cls = get_class(model_class)
    log.info("Loading vision encoder %s from %s (%s)", name, checkpoint, model_class)
    model = cls.from_pretrained(checkpoint)
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    transform = ImageTransform(image_size, processor.image_mean, processor.image_std, resize)
    return HFVisionEncoder(
        model, image_size, feature_layer, drop_cls, transform, num_prefix_tokens, name
    )


def save_hf_vision_twin(
    out_dir: Path, zoo_dir: Path, model_class: str, config: dict, processor: Any, seed: int = 0
) -> None:
    """Save a randomly initialised transformers vision model and its image processor.

    Args:
        out_dir: Folder to write.
        zoo_dir: The zoo (unused by vision twins).
        model_class: Dotted transformers class, e.g. ``transformers.SiglipVisionModel``.
        config: Keyword arguments of the model's config class (the shrunk sizes).
        processor: The image processor (Hydra builds it from its ``_target_``: size, mean, std).
        seed: Initialisation seed.
    """
    cls = get_class(model_class)
    torch.manual_seed(seed)
    cls(cls.config_class(**config)).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
