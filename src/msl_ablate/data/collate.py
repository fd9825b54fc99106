"""Batching: pad token ids and labels, stack the images (or their cached features) of the
samples that have one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from msl_ablate.data.tokens import IGNORE_INDEX


@dataclass
class VLMCollator:
    """Pad a list of samples into a batch.

    Samples without an image are allowed (text-only records); ``pixel_values`` holds the
    images of the other samples, in batch order, which is the order the model scatters them.

    Args:
        pad_token_id: Id used for padding ``input_ids``.
        padding_side: ``right`` for training, ``left`` for batched generation.
    """

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        longest = max(len(s["input_ids"]) for s in samples)
        batch_size = len(samples)
        input_ids = torch.full((batch_size, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, longest), dtype=torch.long)
        for i, s in enumerate(samples):
            n = len(s["input_ids"])
            span = slice(longest - n, longest) if self.padding_side == "left" else slice(0, n)
            input_ids[i, span] = s["input_ids"]
            labels[i, span] = s["labels"]
            attention_mask[i, span] = 1
        batch: dict[str, Any] = {
            "ids": [s["id"] for s in samples],
            "input_ids": input_ids,  # (B, L)
            "attention_mask": attention_mask,  # (B, L)
            "labels": labels,  # (B, L)
        }
        truncated = sum(bool(s.get("truncated")) for s in samples)
        if truncated:  # only then: the other keys are the model's inputs
            batch["truncated"] = truncated  # samples cut at data.max_length (data.too_long)
        # Pixels, or an encoder's cached features (data/feature_cache.py): (B_img, ...).
        for key in ("pixel_values", "image_features"):
            images = [s[key] for s in samples if key in s]
            if images:
                batch[key] = torch.stack(images)
        return batch
