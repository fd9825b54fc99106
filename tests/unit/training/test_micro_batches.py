"""A step's batch in parts of similar length: the least padded parts, each with its images.

That a step in parts is the step of the whole batch: ``test_stage_fit``."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.tokens import IGNORE_INDEX
from msl_ablate.training.micro_batches import partition_by_length, split_by_length

IMAGE = 7  # the placeholder id in the synthetic batches


def _padded(lengths: list[int], groups) -> int:
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def _set_partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in _set_partitions(rest):
        yield [[first], *smaller]
        for i in range(len(smaller)):
            yield [*smaller[:i], [first, *smaller[i]], *smaller[i + 1 :]]


def test_the_parts_are_the_least_padded_split_of_the_rows():
    assert partition_by_length([10, 100, 12, 11, 98, 50], 2) == [[0, 2, 3], [1, 4, 5]]
    assert partition_by_length([5, 5, 5], 3) == [[0, 1, 2]]  # no gain: one part
    assert partition_by_length([9, 3], 1) == [[0, 1]]
    rng = random.Random(0)
    for _ in range(30):  # against every partition of the rows into at most k groups
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 7))]
        k, cost = rng.randint(1, 3), rng.choice([0, 0, 25])  # positions one more part costs
        groups = partition_by_length(lengths, k, cost)
        assert sorted(itertools.chain(*groups)) == list(range(len(lengths)))
        assert len(groups) <= k and all(groups)
        best = min(_padded(lengths, p) + cost * len(p)
                   for p in _set_partitions(list(range(len(lengths)))) if len(p) <= k)  # fmt: skip
        assert _padded(lengths, groups) + cost * len(groups) == best
    # A second part saves 264 of 400 positions: worth it at a cost of 200, not of 300.
    assert len(partition_by_length([10, 11, 12, 100], 2, part_cost=200)) == 2
    assert partition_by_length([10, 11, 12, 100], 2, part_cost=300) == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="max_parts"):
        partition_by_length([1], 0)


def test_each_part_keeps_its_rows_images_and_is_trimmed():
    # Rows 1 and 3 are text-only; every image tensor is filled with its row's number.
    lengths, with_image = [3, 9, 4, 10, 2], [True, False, True, True, True]
    samples = []
    for row, (n, image) in enumerate(zip(lengths, with_image, strict=True)):
        ids = torch.full((n,), 100 + row)
        ids[0] = IMAGE if image else ids[0]
        sample = {"id": str(row), "input_ids": ids, "labels": ids.clone()}
        if image:
            sample["pixel_values"] = torch.full((3, 2, 2), float(row))
        samples.append(sample)
    batch = VLMCollator(pad_token_id=0)(samples)
    assert batch["pixel_values"].shape[0] == 4
    parts = split_by_length(batch, 2, IMAGE)
    assert [p["input_ids"][:, 1].tolist() for p in parts] == [[100, 102, 104], [101, 103]]
    short, long = parts
    assert short["input_ids"].shape == short["labels"].shape == (3, 4)
    assert long["attention_mask"].shape == (2, 10)
    assert short["pixel_values"][:, 0, 0, 0].tolist() == [0.0, 2.0, 4.0]  # rows 0, 2, 4
    assert long["pixel_values"][:, 0, 0, 0].tolist() == [3.0]  # row 3; row 1 has none
    assert (short["labels"][short["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert split_by_length(batch, 1, IMAGE)[0]["input_ids"] is batch["input_ids"]
