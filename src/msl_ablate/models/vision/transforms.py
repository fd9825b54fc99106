"""Image preprocessing: resize strategy, then normalisation with the checkpoint's mean/std."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from msl_ablate.config.enums import ResizeStrategy


class ImageTransform:
    """PIL image -> normalised ``(3, size, size)`` tensor.

    Args:
        image_size: Target side in pixels.
        mean: Per-channel mean in [0, 1], from the checkpoint's preprocessing config.
        std: Per-channel std in [0, 1], from the same config.
        resize: The resize strategy.
    """

    def __init__(
        self,
        image_size: int,
        mean: list[float],
        std: list[float],
        resize: ResizeStrategy | str = ResizeStrategy.resize,
    ):
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.resize = ResizeStrategy(resize)

    def _square(self, image: Image.Image) -> Image.Image:
        size = self.image_size
        if self.resize is ResizeStrategy.letterbox:
            w, h = image.size
            side = max(w, h)
            fill = tuple(int(255 * m) for m in self.mean.flatten().tolist())
            canvas = Image.new("RGB", (side, side), fill)
            canvas.paste(image, ((side - w) // 2, (side - h) // 2))
            image = canvas
        elif self.resize is ResizeStrategy.center_crop:
            w, h = image.size
            scale = size / min(w, h)
            image = image.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC
            )
            w, h = image.size
            left, top = (w - size) // 2, (h - size) // 2
            return image.crop((left, top, left + size, top + size))
        return image.resize((size, size), Image.BICUBIC)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self._square(image.convert("RGB"))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - self.mean) / self.std  # (3, size, size)
