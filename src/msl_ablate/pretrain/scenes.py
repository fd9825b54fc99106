"""In-memory batches from the scene world: normalised pixels, captions and scene labels.

Pretraining never touches the disk: each step draws fresh scenes from one seeded generator and
renders them at the encoder's resolution. Nothing is augmented: colour jitter would erase colour
and flips left/right, the very things the benchmarks ask about.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from msl_ablate.data.synthetic import caption
from msl_ablate.data.world import (
    CELLS,
    COLOURS,
    SHAPES,
    WORDS,
    Scene,
    render_square,
    sample_scene,
)

# The image-level labels (an ImageNet-like label set): one per colour x shape pair.
CATEGORIES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)


@dataclass
class SceneBatch:
    """Scenes rendered for the encoder, with what a caption or label says about them.

    Attributes:
        pixel_values: ``(B, 3, S, S)`` images normalised with the processor's mean/std.
        captions: One caption per scene (``data.synthetic.caption``).
        count: ``(B,)`` number of shapes minus one, in ``0..MAX_OBJECTS - 1``.
        presence: ``(B, len(CATEGORIES))`` 1.0 where a colour x shape pair is in the scene.
    """

    pixel_values: torch.Tensor
    captions: list[str]
    count: torch.Tensor
    presence: torch.Tensor


def normalise(images: Sequence, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL images -> ``(B, 3, S, S)`` float tensor, ``(x - mean) / std`` per channel."""
    pixels = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) for im in images]))
    pixels = pixels.permute(0, 3, 1, 2) / 255.0  # (B, 3, S, S) in [0, 1]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


def perturb(scene: Scene, rng: random.Random) -> Scene:
    """A near copy of a scene, one detail changed: the word, a colour, a shape, a cell, or two colours
    swapped.

    Put beside the original in a contrastive batch, its caption differs from the original's in one
    phrase: telling them apart takes binding colour, shape and position, not a bag of colours.
    """
    if scene.word is not None and rng.random() < 0.2:  # about as often as each other change
        return dataclasses.replace(scene, word=rng.choice([w for w in WORDS if w != scene.word]))
    objects = list(scene.objects)
    i = rng.randrange(len(objects))
    free = [c for c in range(len(CELLS)) if c not in {o.cell for o in objects} | {scene.word_cell}]
    change = rng.choice(["colour", "shape", "cell", "swap"])
    if change == "cell" and free:
        objects[i] = dataclasses.replace(objects[i], cell=rng.choice(free))
    elif change == "swap" and len({o.colour for o in objects}) > 1:
        j = rng.choice([j for j, o in enumerate(objects) if o.colour != objects[i].colour])
        ci, cj = objects[i].colour, objects[j].colour
        objects[i], objects[j] = (
            dataclasses.replace(objects[i], colour=cj),
            dataclasses.replace(objects[j], colour=ci),
        )
    elif change == "shape":
        shape = rng.choice([s for s in SHAPES if s != objects[i].shape])
        objects[i] = dataclasses.replace(objects[i], shape=shape)
    else:
        colour = rng.choice([c for c in COLOURS if c != objects[i].colour])
        objects[i] = dataclasses.replace(objects[i], colour=colour)
    return dataclasses.replace(scene, objects=tuple(sorted(objects, key=lambda o: o.cell)))


def scene_batch(
    scenes: Sequence[Scene],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> SceneBatch:
    """Render scenes and read their labels."""
    count = torch.tensor([len(s.objects) - 1 for s in scenes])  # (B,)
    presence = torch.zeros(len(scenes), len(CATEGORIES))  # (B, 12)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            presence[i, CATEGORIES.index((obj.colour, obj.shape))] = 1.0
    return SceneBatch(
        pixel_values=normalise([render_square(s, image_size) for s in scenes], mean, std),
        captions=[caption(s) for s in scenes],
        count=count,
        presence=presence,
    )


def scene_batches(
    rng: random.Random,
    batch_size: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    hard_negatives: bool = False,
) -> Iterator[SceneBatch]:
    """Endless batches of fresh scenes, all drawn from ``rng`` (deterministic from its seed).

    Args:
        hard_negatives: Half the batch is fresh scenes, each followed by its ``perturb``-ed copy.
    """
    while True:
        if hard_negatives:
            fresh = [sample_scene(rng) for _ in range((batch_size + 1) // 2)]
            scenes = [s for scene in fresh for s in (scene, perturb(scene, rng))][:batch_size]
        else:
            scenes = [sample_scene(rng) for _ in range(batch_size)]
        yield scene_batch(scenes, image_size, mean, std)
