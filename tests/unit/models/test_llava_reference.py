"""The transformers LLaVA reference of ``msl-ablate bench`` is the harness's model."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.models.assemble import build_vlm, max_sequence_length, resolved_checkpoints
from msl_ablate.models.llava_reference import llava_reference
from msl_ablate.training.strategy import apply_stage


@pytest.mark.parametrize("stage", ["align", "finetune"])
def test_the_reference_has_the_same_loss_gradient_and_trained_parameters(make_cfg, stage):
    cfg = make_cfg()
    vlm = build_vlm(cfg)
    for name, node in cfg.strategy.stages.items():
        apply_stage(vlm, node)
        if name == stage:
            break
    tower = get_class(cfg.vision.model_class).from_pretrained(resolved_checkpoints(cfg)["vision"])
    reference = llava_reference(vlm, tower)
    node = cfg.strategy.stages[stage]
    data = VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), node.split, vlm.lm.tokenizer,
        vlm.vision.image_transform, vlm.num_image_tokens, max_sequence_length(cfg, vlm), 4,
    )  # fmt: skip
    data.setup()
    batch = VLMCollator(vlm.lm.tokenizer.pad_token_id)([data.train_set[i] for i in range(4)])
    batch.pop("ids")
    vlm.eval(), reference.eval()  # no dropout: the two forwards must see the same weights only
    ours, theirs = vlm(**batch).loss, reference(**batch).loss
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-5)
    ours.backward(), theirs.backward()
    trained = sum(p.numel() for p in vlm.parameters() if p.requires_grad)
    assert sum(p.numel() for p in reference.parameters() if p.requires_grad) == trained
    head = vlm.projector.layers[0].weight.grad
    torch.testing.assert_close(
        reference.model.multi_modal_projector.linear_1.weight.grad, head, rtol=1e-4, atol=1e-6
    )
    # The reference keeps every block of the tower; the harness cut it at the feature layer.
    whole = sum(p.numel() for p in reference.model.vision_tower.parameters())
    assert whole > sum(p.numel() for p in vlm.vision.parameters())
