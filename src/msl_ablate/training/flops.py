"""FLOPs of one training step, from parameter counts: Lightning's ``ThroughputMonitor`` turns
them into ``device/flops_per_sec`` and, on GPUs it knows, ``device/mfu``.

Counted per token that a part computes: 2 FLOPs per weight forward; in backward 2 more for the
gradient of its input where a trained weight lies in it or before it (the gradient has to pass
through), and 2 more per trained weight for its own gradient. So a trained LM costs 6 per
weight, a frozen LM ahead of a trained projector 4, a tower read from the feature cache 0.
The LM head runs only where a label follows (``VisionLanguageModel.forward``), so it is
counted on those positions. Embedding lookups are not matmuls and attention scores (quadratic in length) are left out; on
the tiny models that undercounts a measured step by a few percent (tests/unit/training).
Hand-written because torch's FLOP counter runs the model under a dispatch mode, far too slow for
every step; it is the reference the test checks this against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from msl_ablate.data.tokens import IGNORE_INDEX
from msl_ablate.models.vlm import VisionLanguageModel


@dataclass(frozen=True)
class PartSize:
    """Matmul weights of one part: all of them, and those that train."""

    weights: int
    trained: int

    @classmethod
    def of(cls, module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> PartSize:
        skipped = {id(p) for m in skip for p in m.parameters()}
        params = [p for p in module.parameters() if id(p) not in skipped]
        return cls(sum(p.numel() for p in params),
                   sum(p.numel() for p in params if p.requires_grad))  # fmt: skip


@dataclass(frozen=True)
class StepSizes:
    """The parts of a model as one stage trains them (read once: trainability is fixed)."""

    vision: PartSize
    projector: PartSize
    lm: PartSize  # its blocks: neither the input embeddings nor the head
    head: PartSize  # the output projection (a tied one shares the embeddings' weight)

    @classmethod
    def of(cls, vlm: VisionLanguageModel) -> StepSizes:
        embeddings = vlm.lm.model.get_input_embeddings()
        head = vlm.lm.model.get_output_embeddings()
        return cls(PartSize.of(vlm.vision), PartSize.of(vlm.projector),
                   PartSize.of(vlm.lm, skip=(embeddings, head)), PartSize.of(head))  # fmt: skip


def _part_flops(size: PartSize, tokens: int, gradient_reaches: bool) -> int:
    backward = (2 * size.weights if gradient_reaches else 0) + 2 * size.trained
    return (2 * size.weights + backward) * tokens


def step_flops(sizes: StepSizes, batch: dict[str, Any], computed: int, image_tokens: int) -> int:
    """FLOPs of one training step's forward and backward (see the module docstring).

    Args:
        sizes: ``StepSizes.of(vlm)``.
        batch: The step's batch (``pixel_values`` or cached ``image_features``).
        computed: Positions the LM computes, padding included (summed over a step's parts).
        image_tokens: Tokens per image.
    """
    images = next((batch[k].shape[0] for k in ("pixel_values", "image_features") if k in batch), 0)
    visual = images * image_tokens
    vision_trains = sizes.vision.trained > 0
    before_lm_trains = vision_trains or sizes.projector.trained > 0
    predicted = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    flops = _part_flops(sizes.head, predicted, before_lm_trains or sizes.lm.trained > 0)
    flops += _part_flops(sizes.lm, computed, before_lm_trains or sizes.lm.trained > 0)
    # The projector's input gradient is needed only for a trained tower behind it.
    flops += _part_flops(sizes.projector, visual, vision_trains)
    if "pixel_values" in batch:  # cached features: the tower does not run
        flops += _part_flops(sizes.vision, visual, vision_trains)
    return flops
