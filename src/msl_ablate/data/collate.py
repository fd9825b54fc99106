"""Batching: pad token ids and labels, stack the images (or their cached features) of the
samples that have one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

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
        def pad(key: str, value: int) -> torch.Tensor:  # (B, longest)
            return pad_sequence([s[key] for s in samples], batch_first=True,
                                padding_value=value, padding_side=self.padding_side)  # fmt: skip

        input_ids = pad("input_ids", self.pad_token_id)
        labels = pad("labels", IGNORE_INDEX)
        lengths = torch.tensor([len(s["input_ids"]) for s in samples])
        positions = torch.arange(input_ids.shape[1])
        if self.padding_side == "left":
            positions = positions.flip(0)
        attention_mask = (positions < lengths[:, None]).long()
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
