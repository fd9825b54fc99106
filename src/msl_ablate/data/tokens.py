"""Names the data pipeline and the model share: the image placeholder and the ignored label."""

from __future__ import annotations

# One per image in a conversation; the collated ids hold N copies of its id (N image tokens).
IMAGE_TOKEN = "<image>"
# Labels with this value carry no loss (prompts, image tokens, padding), as in PyTorch/HF.
IGNORE_INDEX = -100
