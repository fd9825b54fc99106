"""A step's FLOPs from parameter counts, against torch's FLOP counter on the real step."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from msl_ablate.training.flops import StepSizes, step_flops


@pytest.mark.parametrize(
    ("strategy", "stage", "cached"),
    [("align_then_finetune", "align", False),  # tower forward, frozen LM passes the gradient
     ("align_then_finetune", "align", True),  # features from the cache: no tower
     ("align_then_finetune", "finetune", True),  # the LM trains: 6 per weight
     ("vfull_lmfull", "finetune", False)],  # the tower trains too
)  # fmt: skip
def test_step_flops_are_within_a_few_percent_of_the_counted_step(
    stage_batch, strategy, stage, cached
):
    cfg, vlm, batch = stage_batch(stage, f"strategy={strategy}", n=8)
    if cached:
        with torch.no_grad():
            batch["image_features"] = vlm.vision(batch.pop("pixel_values"))
    with FlopCounterMode(display=False) as counter:
        vlm(**batch).loss.backward()
    computed = batch["attention_mask"].numel()
    ours = step_flops(StepSizes.of(vlm), batch, computed, vlm.num_image_tokens)
    # Attention scores (quadratic in length) are not counted, and the first layer of a trained
    # tower needs no input gradient though it is counted: a few percent either way.
    assert 0.85 < ours / counter.get_total_flops() < 1.05
