"""The interface every vision encoder adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from PIL import Image
from torch import nn


class VisionEncoder(nn.Module, ABC):
    """A vision backbone that turns pixels into a grid of patch features.

    Subclasses wrap one weights source (transformers, timm, open_clip) and handle its
    gotchas: which hidden layer to read, whether a CLS token must be dropped, how
    position embeddings follow the resolution.
    """

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width ``D_v`` of each patch feature."""

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """Number ``N`` of image tokens per image at the configured resolution."""

    @property
    @abstractmethod
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """Turn a PIL image into a ``(3, H, W)`` float tensor for this encoder."""

    @property
    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order (used to train only the last k)."""

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            pixel_values: ``(B, 3, H, W)``.

        Returns:
            Patch features ``(B, N, D_v)``.
        """
