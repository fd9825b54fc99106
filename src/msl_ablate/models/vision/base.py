"""The interface every vision encoder adapter implements, and the helpers they share.

Conventions shared by every adapter (so an option file means the same thing for every source):

- ``feature_layer`` indexes hidden states as transformers does: 0 is the patch embedding,
  ``i`` the output of block ``i``, -1 the last block, -2 the one before it (LLaVA's choice).
- *Prefix tokens* are the non-patch tokens an encoder puts before the patches: CLS and, in
  register variants (DINOv2-reg), the registers. ``drop_cls`` drops all of them; otherwise
  they stay in front of the patch tokens and count in ``num_tokens``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from PIL import Image
from torch import nn

# What a built tower holds, hashed into every stage key (experiment/keys.py): stage artifacts
# save trained vision parameters by name, and towers now end at their feature layer (they held
# every block before), so a stage trained with the older layout is never loaded into this one.
TOWER_LAYOUT = "blocks up to feature_layer"


def option_file(name: str) -> str:
    """Where an option lives, for error messages."""
    return f"conf/vision/{name}.yaml"


def blocks_feeding(feature_layer: int, num_blocks: int, name: str) -> int:
    """How many transformer blocks run before hidden state ``feature_layer``.

    Args:
        feature_layer: Hidden-state index, transformers-style (see the module docstring).
        num_blocks: Depth of the encoder.
        name: The option name, for the error message.

    Returns:
        A count in ``[0, num_blocks]``.

    Raises:
        ValueError: ``feature_layer`` is outside ``[-(num_blocks + 1), num_blocks]``.
    """
    if not -(num_blocks + 1) <= feature_layer <= num_blocks:
        raise ValueError(
            f"vision.feature_layer={feature_layer} is out of range for an encoder with "
            f"{num_blocks} blocks; expected {-(num_blocks + 1)}..{num_blocks} "
            f"({option_file(name)})"
        )
    return feature_layer % (num_blocks + 1)


class VisionEncoder(nn.Module, ABC):
    """A vision backbone that turns pixels into a grid of patch features.

    Subclasses wrap one weights source (transformers, timm, open_clip) and handle its
    gotchas: which hidden layer to read, which prefix tokens to drop, how position
    embeddings follow the resolution.
    """

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width ``D_v`` of each patch feature."""

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """Rows and columns of the patch-token grid at the configured resolution."""

    # Set by adapters in __init__; the defaults describe an encoder without prefix tokens.
    drop_cls: bool = True
    num_prefix_tokens: int = 0
    _transform: Callable[[Image.Image], torch.Tensor]

    @property
    def num_tokens(self) -> int:
        """Number ``N`` of image tokens per image (patches plus any kept prefix tokens)."""
        rows, cols = self.grid_size
        return rows * cols + (0 if self.drop_cls else self.num_prefix_tokens)

    @property
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """Turn a PIL image into a ``(C, H, W)`` float tensor (``C = 3``; fused: 3 per encoder)."""
        return self._transform

    @property
    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks that feed the features, in order (``partial`` trains the last k).

        Blocks after ``feature_layer`` are left out: they never receive a gradient.
        """

    _unread: list[str] | None = None

    def unread_parameters(self) -> list[str]:
        """Names of the parameters that the features never depend on.

        A final norm or pooling layer after the blocks, the blocks after ``feature_layer``
        where a backend runs them all, a mask token used only in masked pretraining. A trained
        tower leaves them frozen: they would get no gradient (DDP stops at such parameters).
        Found once, by which parameters one image's features reach in backward, so it holds
        for every backend without naming their layers.
        """
        if self._unread is None:
            self._unread = _probe_unread(self)
        return self._unread

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            pixel_values: ``(B, C, H, W)``, as stacked from ``image_transform`` outputs.

        Returns:
            Image features ``(B, N, D_v)``.
        """


def _probe_unread(encoder: VisionEncoder) -> list[str]:
    names, params = zip(*encoder.named_parameters(), strict=True)
    flags, training = [p.requires_grad for p in params], encoder.training
    pixels = encoder.image_transform(Image.new("RGB", (64, 64), (128, 128, 128))).unsqueeze(0)
    encoder.eval()
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            features = encoder(pixels.to(params[0].device, params[0].dtype))
            grads = torch.autograd.grad(features.sum(), params, allow_unused=True)
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        encoder.train(training)
    return [name for name, grad in zip(names, grads, strict=True) if grad is None]


def check_token_count(features: torch.Tensor, encoder: VisionEncoder, hint: str) -> None:
    """Raise if an encoder returned a different number of tokens than it announced.

    Raises:
        RuntimeError: Naming both counts and the likely config key (``hint``).
    """
    if features.shape[1] != encoder.num_tokens:
        raise RuntimeError(
            f"vision encoder returned {features.shape[1]} tokens, expected {encoder.num_tokens} "
            f"(grid {encoder.grid_size[0]}x{encoder.grid_size[1]}); {hint}"
        )
