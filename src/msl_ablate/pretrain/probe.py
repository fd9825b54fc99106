"""Few-shot linear probes on frozen features: proof that a pretrained encoder beats its init.

Features are the tokens of the second-to-last layer (the layer the VLM reads), averaged. The
tasks are two of the benchmark's questions, on scenes of their own generator (``PROBE_SEED``):

- ``count``: how many shapes are there (1..4, uniform: chance 0.25);
- ``circle_colour``: what colour is the circle, among scenes with exactly one circle
  (4 colours, uniform: chance 0.25).

Each probe is fitted on ``SHOTS`` examples per class (ridge regression, closed form), the same
budget for the pretrained model and for its random init. Few-shot on purpose: fitted on 1000
scenes, even a random init reads the count off these simple images (~0.95), so only the sample
efficiency of the features tells a pretrained encoder from its init.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from msl_ablate.data.world import COLOURS, MAX_OBJECTS, Scene, render_square, sample_scene
from msl_ablate.pretrain.cards import Score
from msl_ablate.pretrain.scenes import normalise

PROBE_SEED = 10_007  # the probe scenes: the same for every recipe, not a training seed
FEATURE_LAYER = -2
SHOTS, DRAWS, RIDGE = 10, 10, 1.0
N_TRAIN, N_TEST = 512, 512  # the pool k-shot sets are drawn from; the test scenes
PROBE_TASKS = {"count": MAX_OBJECTS, "circle_colour": len(COLOURS)}  # task -> classes (uniform)


def task_labels(scenes: Sequence[Scene]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{task: (indices of the scenes it asks about, their labels)}``."""
    colours = list(COLOURS)
    circles = [[o for o in s.objects if o.shape == "circle"] for s in scenes]
    one_circle = [i for i, c in enumerate(circles) if len(c) == 1]
    return {
        "count": (torch.arange(len(scenes)), torch.tensor([len(s.objects) - 1 for s in scenes])),
        "circle_colour": (
            torch.tensor(one_circle),
            torch.tensor([colours.index(circles[i][0].colour) for i in one_circle]),
        ),
    }


@torch.no_grad()
def pooled_features(model: nn.Module, pixel_values: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``(N, D)``: the model's ``FEATURE_LAYER`` tokens, averaged, for ``(N, 3, S, S)`` images."""
    was_training = model.training
    model.eval()
    feats = []
    for start in range(0, len(pixel_values), chunk):
        out = model(pixel_values=pixel_values[start : start + chunk], output_hidden_states=True)
        feats.append(out.hidden_states[FEATURE_LAYER].mean(dim=1))  # (b, T, D) -> (b, D)
    model.train(was_training)
    return torch.cat(feats)


def few_shot_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    shots: int = SHOTS,
    draws: int = DRAWS,
    ridge: float = RIDGE,
) -> float:
    """Mean test accuracy of ridge regression to one-hot +-1 targets on ``shots`` per class.

    The few-shot linear probe of the ViT and SigLIP papers: closed form, so it is exact and fast.
    With plenty of labels even a random init probes these simple scenes well; what pretraining
    buys is features from which a handful of examples suffice. ``draws`` different k-shot sets
    (a fixed generator) are averaged.
    """
    generator = torch.Generator().manual_seed(0)
    accuracies = []
    for _ in range(draws):
        picked = [
            rows[torch.randperm(len(rows), generator=generator)[:shots]]
            for rows in (torch.nonzero(train_y == c).flatten() for c in range(n_classes))
        ]
        idx = torch.cat(picked)  # (<= shots * C,)
        x, y = train_x[idx], train_y[idx]
        mean, std = x.mean(0), x.std(0) + 1e-6
        x = F.pad((x - mean) / std, (0, 1), value=1.0)  # (n, D + 1): a bias column
        xt = F.pad((test_x - mean) / std, (0, 1), value=1.0)  # (N_test, D + 1)
        targets = F.one_hot(y, n_classes).float() * 2 - 1  # (n, C) in {-1, 1}
        w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1]), x.T @ targets)  # (D+1, C)
        accuracies.append((xt @ w).argmax(-1).eq(test_y).float().mean().item())
    return sum(accuracies) / len(accuracies)


def probe_scores(
    model: nn.Module,
    random_init: nn.Module,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> list[Score]:
    """Few-shot probe accuracy of each task, for the pretrained model and for a random init.

    Args:
        model: The pretrained transformers vision model.
        random_init: A randomly initialised model of the same shape.
        image_size: Resolution to render the probe scenes at.
        mean: The processor's per-channel mean.
        std: The processor's per-channel std.

    Returns:
        One Score per task, named ``probe_10shot_accuracy/<task> (chance 0.25)``.
    """
    rng = random.Random(PROBE_SEED)
    train = [sample_scene(rng) for _ in range(N_TRAIN)]
    test = [sample_scene(rng) for _ in range(N_TEST)]
    train_labels, test_labels = task_labels(train), task_labels(test)
    pixels = normalise([render_square(s, image_size) for s in train + test], mean, std)
    accuracies: dict[str, list[float]] = {task: [] for task in PROBE_TASKS}
    for encoder in (model, random_init):
        feats = pooled_features(encoder, pixels)  # (N_train + N_test, D)
        train_x, test_x = feats[:N_TRAIN], feats[N_TRAIN:]
        for task, n_classes in PROBE_TASKS.items():
            (train_rows, train_y), (test_rows, test_y) = train_labels[task], test_labels[task]
            accuracy = few_shot_accuracy(
                train_x[train_rows], train_y, test_x[test_rows], test_y, n_classes
            )
            accuracies[task].append(round(accuracy, 4))
    return [
        Score(f"probe_{SHOTS}shot_accuracy/{task} (chance {1 / n:.2f})", *accuracies[task])
        for task, n in PROBE_TASKS.items()
    ]
