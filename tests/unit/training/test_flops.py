"""A step's FLOPs from parameter counts, against torch's FLOP counter on the real step."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.models.assemble import build_vlm, max_sequence_length
from msl_ablate.training.flops import StepSizes, step_flops
from msl_ablate.training.strategy import apply_stage


@pytest.mark.parametrize(
    ("strategy", "stage", "cached"),
    [("align_then_finetune", "align", False),  # tower forward, frozen LM passes the gradient
     ("align_then_finetune", "align", True),  # features from the cache: no tower
     ("align_then_finetune", "finetune", True),  # the LM trains: 6 per weight
     ("vfull_lmfull", "finetune", False)],  # the tower trains too
)  # fmt: skip
def test_step_flops_are_within_a_few_percent_of_the_counted_step(make_cfg, strategy, stage, cached):
    cfg = make_cfg(f"strategy={strategy}")
    vlm = build_vlm(cfg)
    for name, node in cfg.strategy.stages.items():
        apply_stage(vlm, node)
        if name == stage:
            break
    node = cfg.strategy.stages[stage]
    data = VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), node.split, vlm.lm.tokenizer,
        vlm.vision.image_transform, vlm.num_image_tokens, max_sequence_length(cfg, vlm), 4,
    )  # fmt: skip
    data.setup()
    batch = VLMCollator(vlm.lm.tokenizer.pad_token_id)([data.train_set[i] for i in range(8)])
    batch.pop("ids")
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
