"""Resize strategies of ``ImageTransform``: shapes, letterbox colour, centre crop."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from msl_ablate.models.vision.transforms import ImageTransform, ResizeStrategy

MEAN = [0.2, 0.4, 0.6]
STD = [0.5, 0.25, 0.5]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _normalised(rgb: tuple[int, int, int]) -> torch.Tensor:
    return (torch.tensor(rgb, dtype=torch.float32) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)


def _bands(width: int, height: int) -> Image.Image:
    """Three vertical bands, red | green | blue, of equal width."""
    image = Image.new("RGB", (width, height))
    third = width // 3
    for i, colour in enumerate((RED, GREEN, BLUE)):
        image.paste(colour, (i * third, 0, (i + 1) * third, height))
    return image


@pytest.mark.parametrize("strategy", list(ResizeStrategy))
@pytest.mark.parametrize("size", [(90, 30), (30, 90), (40, 40)])
def test_every_strategy_returns_a_square_tensor(strategy: ResizeStrategy, size: tuple[int, int]):
    out = ImageTransform(32, MEAN, STD, strategy)(Image.new("RGB", size, GREEN))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 16, 16], _normalised(GREEN), atol=0.02, rtol=0)


def test_letterbox_pads_with_the_mean_colour():
    out = ImageTransform(30, MEAN, STD, "letterbox")(Image.new("RGB", (90, 30), RED))
    # 90x30 -> pasted in the middle of a 90x90 canvas -> rows 0-9 and 20-29 are padding.
    fill = tuple(int(255 * m) for m in MEAN)  # what PIL can paint: the mean, rounded down
    for row in (0, 5, 25, 29):
        torch.testing.assert_close(out[:, row], _normalised(fill)[:, None].expand(3, 30))
    torch.testing.assert_close(out[:, 15, 15], _normalised(RED), atol=0.02, rtol=0)
    assert out[:, 0].abs().max() < 0.02  # ~0 after normalisation: the mean colour


def test_center_crop_keeps_the_centre():
    image = _bands(90, 30)
    crop = ImageTransform(30, MEAN, STD, "center_crop")(image)
    # Shorter side 30 -> 30, crop the middle 30 columns: the green band only.
    torch.testing.assert_close(
        crop[:, :, 2:-2], _normalised(GREEN)[:, None, None].expand(3, 30, 26), atol=0.02, rtol=0
    )
    squashed = ImageTransform(30, MEAN, STD, "resize")(image)
    torch.testing.assert_close(squashed[:, 15, 0], _normalised(RED), atol=0.02, rtol=0)
    torch.testing.assert_close(squashed[:, 15, -1], _normalised(BLUE), atol=0.02, rtol=0)


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="'stretch' is not a valid ResizeStrategy"):
        ImageTransform(32, MEAN, STD, "stretch")
