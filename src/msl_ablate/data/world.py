"""The synthetic scene world: random scenes of coloured shapes and a short word.

This is the one module a richer world can replace (ROADMAP: pretrained tiny zoo). A scene
is pure data (``Scene``); ``render_scene`` draws it with PIL, and the question and caption
writers in ``synthetic.py`` read only the ``Scene``, never the pixels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

# Bump when scenes or their rendering change: zoo members pretrained on the world are rebuilt.
WORLD_VERSION = 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
WORDS: tuple[str, ...] = ("cat", "dog", "sun", "car", "box", "map", "pen", "cup")
# Scenes are laid out on a 2x2 grid of cells, so shapes never overlap and positions
# have names; one free cell may hold the word.
CELLS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
MAX_OBJECTS = 4


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene."""

    shape: str
    colour: str
    cell: int  # index into CELLS


@dataclass(frozen=True)
class Scene:
    """A scene: its shapes and an optional word written in a free cell."""

    objects: tuple[SceneObject, ...]
    word: str | None = None
    word_cell: int | None = None
    jitter: tuple[tuple[int, int], ...] = field(default=(), compare=False)


def sample_scene(
    rng: random.Random, max_objects: int = MAX_OBJECTS, word_prob: float = 0.5
) -> Scene:
    """Draw a random scene.

    Args:
        rng: The random generator (the only source of randomness, for determinism).
        max_objects: Largest number of shapes (1..4).
        word_prob: Probability of writing a word in a free cell.

    Returns:
        The scene.
    """
    if not 1 <= max_objects <= len(CELLS):
        raise ValueError(f"max_objects must be in 1..{len(CELLS)}, got {max_objects}")
    n = rng.randint(1, max_objects)
    cells = rng.sample(range(len(CELLS)), n)
    objects = tuple(
        SceneObject(shape=rng.choice(SHAPES), colour=rng.choice(list(COLOURS)), cell=c)
        for c in sorted(cells)
    )
    free = [c for c in range(len(CELLS)) if c not in cells]
    word, word_cell = None, None
    if free and rng.random() < word_prob:
        word, word_cell = rng.choice(WORDS), rng.choice(free)
    jitter = tuple((rng.randint(-3, 3), rng.randint(-3, 3)) for _ in range(len(CELLS)))
    return Scene(objects=objects, word=word, word_cell=word_cell, jitter=jitter)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` x ``size`` pixels."""
    image = Image.new("RGB", (size, size), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    half = size // 2
    radius = int(size * 0.17)
    for obj in scene.objects:
        dx, dy = scene.jitter[obj.cell] if scene.jitter else (0, 0)
        cx = (obj.cell % 2) * half + half // 2 + dx * size // 64
        cy = (obj.cell // 2) * half + half // 2 + dy * size // 64
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon(
                [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                fill=fill,
            )
    if scene.word is not None and scene.word_cell is not None:
        font = ImageFont.load_default(size=max(8, size // 7))
        x = (scene.word_cell % 2) * half + size // 16
        y = (scene.word_cell // 2) * half + half // 3
        draw.text((x, y), scene.word, fill=(20, 20, 20), font=font)
    return image
