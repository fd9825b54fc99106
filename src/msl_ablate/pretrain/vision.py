"""Pretrain a tiny vision tower on the scene world with its family's objective, on CPU.

``pretrain_vision_twin`` is the ``_target_`` of every ``conf/zoo/vision`` recipe. A vision
option points its ``twin`` at a recipe; ``models.zoo.resolve_checkpoint`` calls the builder once
per recipe and the folder then loads through the ordinary ``from_pretrained`` path, with a
``card.json`` saying how it was made and how much better than its random init it probes.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from msl_ablate.pretrain.cards import Card, Stopwatch, sample_losses, write_card
from msl_ablate.pretrain.objectives import (
    ClipObjective,
    DinoObjective,
    Objective,
    SiglipObjective,
    SupervisedObjective,
)
from msl_ablate.pretrain.probe import probe_scores
from msl_ablate.pretrain.scenes import SceneBatch, scene_batches
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

OBJECTIVES: dict[str, type[Objective]] = {
    "clip": ClipObjective,
    "siglip": SiglipObjective,
    "dino": DinoObjective,
    "supervised": SupervisedObjective,
}


def optimise(
    objective: Objective,
    batches: Iterator[SceneBatch],
    steps: int,
    lr: float,
    weight_decay: float = 0.05,
    warmup: float = 0.1,
) -> list[float]:
    """AdamW with linear warm-up and cosine decay, gradients clipped at 1; the loss per step."""
    params = [p for p in objective.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # norms, biases, t, b
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
    warm = max(1, round(warmup * steps))

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / warm) * (1 + math.cos(math.pi * step / steps)) / 2

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    objective.train()
    losses = []
    for step in range(steps):
        loss = objective(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        objective.after_step((step + 1) / steps)
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 5) == 0:
            log.info("pretrain step %d/%d loss %.4f", step + 1, steps, loss.item())
    return losses


def pretrain_vision_twin(
    out_dir: Path,
    zoo_dir: Path,
    name: str,
    objective: str,
    model_class: str,
    config: dict,
    processor: Any,
    image_size: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    weight_decay: float = 0.05,
    **objective_args: Any,
) -> nn.Module:
    """Pretrain a transformers vision tower on the scene world; save it, its processor and card.

    Args:
        out_dir: Folder to write (``save_pretrained`` of ``model_class``, the processor, the card).
        zoo_dir: The zoo (its tokenizer reads the captions of ``clip`` and ``siglip``).
        name: The recipe's name (its file stem in ``conf/zoo/vision``).
        objective: One of ``OBJECTIVES``: ``clip``, ``siglip``, ``dino``, ``supervised``.
        model_class: Dotted transformers class, e.g. ``transformers.SiglipVisionModel``.
        config: Keyword arguments of the model's config class; its ``image_size`` must be
            ``image_size``.
        processor: The image processor (Hydra builds it: size, mean, std); saved alongside.
        image_size: Side of the rendered scenes.
        steps: Optimisation steps (the zoo may cap them for tests).
        batch_size: Scenes per step.
        lr: Peak learning rate (AdamW, warm-up then cosine decay).
        seed: Seed of the initialisation, the scenes and the masks: same recipe, same weights.
        weight_decay: AdamW weight decay of the matrices.
        **objective_args: The objective's own knobs (see ``pretrain.objectives``).

    Returns:
        The pretrained tower, as saved (the zoo ignores it; tests compare it with the folder).

    Raises:
        ValueError: An unknown objective, a config whose ``image_size`` differs, or steps < 1.
    """
    if objective not in OBJECTIVES:
        raise ValueError(
            f"objective={objective!r} is not one of {sorted(OBJECTIVES)} (conf/zoo/vision/{name}.yaml)"
        )
    if config.get("image_size", image_size) != image_size or steps < 1:
        raise ValueError(
            f"config.image_size={config.get('image_size')} must equal image_size={image_size}, "
            f"and steps={steps} must be >= 1 (conf/zoo/vision/{name}.yaml)"
        )
    watch = Stopwatch()
    recipe = {
        "name": name, "objective": objective, "model_class": model_class, "config": config,
        "processor": json.loads(processor.to_json_string()), "image_size": image_size,
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "weight_decay": weight_decay, **objective_args,
    }  # fmt: skip
    cls = get_class(model_class)
    torch.manual_seed(seed)
    vision = cls(cls.config_class(**{**config, "image_size": image_size}))
    random_init = copy.deepcopy(vision)  # the probe's baseline: the same weights, untrained
    loss_fn = OBJECTIVES[objective](vision, zoo_dir, **objective_args)
    mean, std = processor.image_mean, processor.image_std
    rng = random.Random(seed)
    batches = scene_batches(rng, batch_size, image_size, mean, std, loss_fn.hard_negatives)
    log.info("Pretraining %s (%s, %d steps of %d scenes)", name, objective, steps, batch_size)
    losses = optimise(loss_fn, batches, steps, lr, weight_decay)
    scores = probe_scores(vision, random_init, image_size, mean, std)
    vision.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card = Card(
        name=name,
        kind="vision",
        objective=objective,
        recipe=recipe,
        steps=steps,
        seed=seed,
        losses=sample_losses(losses),
        build_seconds=watch.seconds,
        scores=scores,
    )
    write_card(out_dir, card)
    log.info("Pretrained %s in %.0f s: %s", name, card.build_seconds, scores)
    return vision
