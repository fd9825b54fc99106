"""The transformers LLaVA reference of ``msl-ablate bench`` is the harness's model."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class

from msl_ablate.models.assemble import resolved_checkpoints
from msl_ablate.models.llava_reference import llava_reference


@pytest.mark.parametrize("stage", ["align", "finetune"])
def test_the_reference_has_the_same_loss_gradient_and_trained_parameters(stage_batch, stage):
    cfg, vlm, batch = stage_batch(stage)
    tower = get_class(cfg.vision.model_class).from_pretrained(resolved_checkpoints(cfg)["vision"])
    reference = llava_reference(vlm, tower)
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
