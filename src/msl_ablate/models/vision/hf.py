"""Vision encoders from transformers checkpoints (SigLIP, CLIP, DINOv2, ViT)."""

from __future__ import annotations

import torch
from hydra.utils import get_class
from torch import nn
from transformers import AutoImageProcessor

from msl_ablate.models.vision.base import VisionEncoder
from msl_ablate.models.vision.transforms import ImageTransform, ResizeStrategy
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


class HFVisionEncoder(VisionEncoder):
    """A transformers vision tower read at one hidden layer.

    Args:
        model: A transformers vision model (``SiglipVisionModel``, ``CLIPVisionModel``, ...).
        image_size: Input resolution; position embeddings are interpolated when it differs
            from the checkpoint's.
        feature_layer: Index into ``hidden_states`` (-2: second-to-last block, as LLaVA).
        drop_cls: Drop the leading CLS token (CLIP, DINOv2, ViT); SigLIP has none.
        transform: The image transform built from the checkpoint's processor config.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        feature_layer: int,
        drop_cls: bool,
        transform: ImageTransform,
    ):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.feature_layer = feature_layer
        self.drop_cls = drop_cls
        self._transform = transform
        config = model.config
        self._native_size = config.image_size
        self._num_patches = (image_size // config.patch_size) ** 2

    @property
    def embed_dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_tokens(self) -> int:
        return self._num_patches

    @property
    def image_transform(self) -> ImageTransform:
        return self._transform

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        if self.image_size != self._native_size:
            kwargs["interpolate_pos_encoding"] = True
        out = self.model(pixel_values=pixel_values, output_hidden_states=True, **kwargs)
        features = out.hidden_states[self.feature_layer]  # (B, N[+1], D_v)
        if self.drop_cls:
            features = features[:, 1:]
        if features.shape[1] != self._num_patches:
            raise RuntimeError(
                f"vision encoder returned {features.shape[1]} tokens, expected {self._num_patches} "
                f"for image_size={self.image_size}; check vision.drop_cls"
            )
        return features


def build_hf_vision_encoder(
    name: str,
    checkpoint: str,
    model_class: str,
    image_size: int,
    feature_layer: int = -2,
    drop_cls: bool = False,
    resize: ResizeStrategy | str = ResizeStrategy.resize,
) -> HFVisionEncoder:
    """Load a transformers vision tower and its preprocessing from a hub id or folder.

    Args:
        name: The option name (for logs).
        checkpoint: Hub id or local folder for ``from_pretrained``.
        model_class: Dotted path of the transformers class, e.g. ``transformers.SiglipVisionModel``.
        image_size: Input resolution.
        feature_layer: Hidden layer to read.
        drop_cls: Whether the output starts with a CLS token to drop.
        resize: Resize strategy.

    Returns:
        The encoder.
    """
    cls = get_class(model_class)
    log.info("Loading vision encoder %s from %s (%s)", name, checkpoint, model_class)
    model = cls.from_pretrained(checkpoint)
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    transform = ImageTransform(image_size, processor.image_mean, processor.image_std, resize)
    return HFVisionEncoder(model, image_size, feature_layer, drop_cls, transform)
