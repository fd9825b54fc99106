"""One step's batch as micro-batches of similar length: the same samples, less padding.

A batch is padded to its longest sample, so one long conversation among short answers makes
most of the computed positions padding (about half on the mini world's instruction mix). Cut
into a few micro-batches by length, each padded only to its own longest sample, the step
computes the same loss on the same samples (the token-mean over the whole batch: each part
sums its token losses and divides by the batch's count), and with one autograd graph the same
gradient, up to float rounding. Unlike length-grouped batches (``group_by_length``), which
change which samples share a step, this changes nothing but the work done.

transformers' padding-free collation (``DataCollatorWithFlattening``) would remove all padding,
but only its flash-attention kernels honour the packed sequences' boundaries; this works with
every attention implementation, on CPU too.
"""

from __future__ import annotations

from typing import Any

import torch

from msl_ablate.data.tokens import IGNORE_INDEX

# Keys of a collated batch (data/collate.py) with one row per sample.
ROW_KEYS = ("input_ids", "attention_mask", "labels")
# Keys with one row per image, in the order of the samples that have one.
IMAGE_KEYS = ("pixel_values", "image_features")
# Each part costs a forward and backward call of its own: a part is added only where it saves
# at least this share of the unsplit batch's positions. Measured on the demo model (2 cores):
# stage-1 steps 97 / 93 / 90-95 / 96-99 ms in 1 / 2 / 3 / 4 parts saving 0 / 11 / 14 / 15%
# of the positions; stage-2 steps 250 / 143-163 / 149-151 / 152-170 ms saving 0 / 38 / 45 / 48%.
PART_COST = 0.05


def partition_by_length(
    lengths: list[int], max_parts: int, part_cost: float = 0.0
) -> list[list[int]]:
    """Split rows into at most ``max_parts`` groups that minimise the computed positions.

    The optimal groups are contiguous runs of the rows sorted by length (a group's cost is its
    size times its longest row, plus ``part_cost``), found by dynamic programming over the
    sorted rows.

    Args:
        lengths: Each row's length (positions that are not padding).
        max_parts: Most groups to return (>= 1).
        part_cost: What one more group costs, in positions.

    Returns:
        Row indices per group, each group in batch order, shortest group first; empty groups
        are never returned.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be >= 1, got {max_parts}")
    n = len(lengths)
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    s = [lengths[i] for i in order]
    inf = float("inf")
    # best[k][j]: least padded positions for the first j sorted rows in k groups.
    best = [[inf] * (n + 1) for _ in range(max_parts + 1)]
    cut = [[0] * (n + 1) for _ in range(max_parts + 1)]
    best[0][0] = 0
    for k in range(1, max_parts + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):  # the k-th group holds sorted rows i .. j-1
                cost = best[k - 1][i] + (j - i) * s[j - 1]
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_parts + 1), key=lambda k: (best[k][n] + k * part_cost, k))
    groups, j = [], n
    while k > 0:
        i = cut[k][j]
        groups.append(sorted(order[i:j]))
        j, k = i, k - 1
    return groups[::-1]


def split_by_length(
    batch: dict[str, Any], max_parts: int, image_token_id: int
) -> list[dict[str, torch.Tensor]]:
    """The model inputs of a right-padded batch as up to ``max_parts`` micro-batches.

    Each part keeps its rows' images (a row has one when its ``input_ids`` hold the image
    placeholder) and is trimmed to its longest row.

    Args:
        batch: A collated training batch (``data.collate.VLMCollator``, right padding).
        max_parts: Most micro-batches (1 returns the batch's model inputs as they are).
        image_token_id: The LM's image placeholder id.

    Returns:
        Model inputs per part (``input_ids``, ``attention_mask``, ``labels`` and the image key
        if the part has images).
    """
    inputs = {k: batch[k] for k in (*ROW_KEYS, *IMAGE_KEYS) if k in batch}
    if max_parts == 1:
        return [inputs]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    has_image = (batch["input_ids"] == image_token_id).any(dim=1)
    image_row = torch.cumsum(has_image, 0) - 1  # a row's index among the images
    parts = []
    part_cost = PART_COST * len(lengths) * max(lengths)
    for rows in partition_by_length(lengths, max_parts, part_cost):
        index = torch.tensor(rows)
        longest = max(lengths[i] for i in rows)
        part = {k: inputs[k][index, :longest] for k in ROW_KEYS}
        images = image_row[index][has_image[index]]
        for key in IMAGE_KEYS:
            if key in inputs and len(images):
                part[key] = inputs[key][images]
        parts.append(part)
    return parts


def count_label_tokens(labels: torch.Tensor) -> torch.Tensor:
    """The positions a causal LM's loss averages over: labels after the shift by one."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()
