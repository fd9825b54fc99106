"""Padding, attention masks and image stacking."""

from __future__ import annotations

import torch

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.tokens import IGNORE_INDEX


def _sample(rid, ids, image=True):
    s = {"id": rid, "input_ids": torch.tensor(ids), "labels": torch.tensor(ids)}
    if image:
        s["pixel_values"] = torch.full((3, 2, 2), float(len(ids)))
    return s


def test_right_padding_masks_and_text_only_samples():
    batch = VLMCollator(pad_token_id=0, padding_side="right")(
        [_sample("a", [5, 6, 7]), _sample("b", [8], image=False)]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["pixel_values"].shape == (1, 3, 2, 2)  # only the sample with an image
    assert batch["ids"] == ["a", "b"]


def test_left_padding_for_generation():
    batch = VLMCollator(pad_token_id=9, padding_side="left")(
        [_sample("a", [1]), _sample("b", [2, 3])]
    )
    assert batch["input_ids"].tolist() == [[9, 1], [2, 3]]
    assert batch["attention_mask"].tolist() == [[0, 1], [1, 1]]
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [1.0, 2.0]  # batch order kept
