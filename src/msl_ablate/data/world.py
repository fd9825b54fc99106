"""The synthetic scene world: scenes of coloured, textured shapes and a word, on cluttered canvases.

This is the one module a richer world can replace. A scene is pure data (``Scene``);
``render_scene`` draws it with PIL, and the question and caption writers in ``synthetic.py`` read
only the ``Scene``, never the pixels. What questions ask about (colour, shape, count, the 2x2
region each shape is in, relations between regions, the word) is in the scene's facts; what only
makes seeing harder is nuisance, drawn but never asked about: the canvas's aspect ratio, a tinted
and noisy background with clutter marks, each shape's texture, size and offset inside its region
(neighbours may overlap, the later one on top), and the word's size (``small`` words are legible
only at the higher resolutions: a few pixels tall at 64 px, readable at 128 px and up).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Bump when scenes or their rendering change: zoo members pretrained on the world are rebuilt.
WORLD_VERSION = 3

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
WORDS: tuple[str, ...] = ("cat", "dog", "sun", "car", "box", "map", "pen", "cup")
# Scenes are laid out in the 2x2 regions of the canvas, one shape per region, so positions have
# names and relations are defined; one free region may hold the word.
CELLS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
MAX_OBJECTS = 4
# Natural aspect ratios (width, height) of the canvas, as photos have; the long side is `size`.
ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (4, 3), (3, 4), (16, 9))
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
# Font height = canvas short side / n: large words are legible at 64 px (9-16 px fonts), small ones
# only from about 128 px (5-12 px fonts; 3-6 px at 64 px, a blur after a 16 px patch embedding).
WORD_SIZES: dict[str, int] = {"large": 4, "small": 10}
# The smallest font (px) a word is asked about where a record must be answerable from the image
# (generate_instruction_mix's stage splits): every large word at 64 px, small ones at 128 px
# except on 16:9 canvases.
MIN_LEGIBLE_PX = 8


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene: its facts (shape, colour, region) and how it is drawn.

    Attributes:
        shape: One of ``SHAPES``.
        colour: One of ``COLOURS``.
        cell: Its region, an index into ``CELLS``.
        scale: Its size relative to the region (0.8 to 1.25).
        offset: Its centre's shift from the region's centre, in fractions of the region.
        texture: One of ``TEXTURES`` (stripes and dots in a darker shade of its colour).
    """

    shape: str
    colour: str
    cell: int
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    texture: str = "solid"


@dataclass(frozen=True)
class Scene:
    """A scene: its shapes, an optional word in a free region, and how the canvas looks.

    Attributes:
        objects: The shapes, in region order.
        word: The word written in the image, or None.
        word_cell: The word's region.
        word_size: ``large`` or ``small`` (legible only at higher resolutions).
        aspect: The canvas's (width, height) ratio, one of ``ASPECTS``.
        background: The canvas's base tint (RGB).
        noise_seed: Seed of the background's pixel noise and clutter marks.
    """

    objects: tuple[SceneObject, ...]
    word: str | None = None
    word_cell: int | None = None
    word_size: str = "large"
    aspect: tuple[int, int] = (1, 1)
    background: tuple[int, int, int] = field(default=(245, 245, 240), compare=False)
    noise_seed: int = field(default=0, compare=False)


def sample_scene(
    rng: random.Random, max_objects: int = MAX_OBJECTS, word_prob: float = 0.5
) -> Scene:
    """Draw a random scene.

    Args:
        rng: The random generator (the only source of randomness, for determinism).
        max_objects: Largest number of shapes (1..4).
        word_prob: Probability of writing a word in a free region.

    Returns:
        The scene.
    """
    if not 1 <= max_objects <= len(CELLS):
        raise ValueError(f"max_objects must be in 1..{len(CELLS)}, got {max_objects}")
    n = rng.randint(1, max_objects)
    cells = rng.sample(range(len(CELLS)), n)
    objects = tuple(
        SceneObject(
            shape=rng.choice(SHAPES),
            colour=rng.choice(list(COLOURS)),
            cell=c,
            scale=round(rng.uniform(0.8, 1.25), 3),
            offset=(round(rng.uniform(-0.2, 0.2), 3), round(rng.uniform(-0.2, 0.2), 3)),
            texture=rng.choice(TEXTURES),
        )
        for c in sorted(cells)
    )
    free = [c for c in range(len(CELLS)) if c not in cells]
    word, word_cell, word_size = None, None, "large"
    if free and rng.random() < word_prob:
        word, word_cell = rng.choice(WORDS), rng.choice(free)
        word_size = rng.choice(sorted(WORD_SIZES))
    return Scene(
        objects=objects,
        word=word,
        word_cell=word_cell,
        word_size=word_size,
        aspect=rng.choice(ASPECTS),
        background=tuple(rng.randint(215, 250) for _ in range(3)),
        noise_seed=rng.randrange(2**31),
    )


def canvas_size(scene: Scene, size: int) -> tuple[int, int]:
    """(width, height) in pixels of a scene drawn with long side ``size``."""
    w, h = scene.aspect
    return (size, max(1, round(size * h / w))) if w >= h else (max(1, round(size * w / h)), size)


def _background(scene: Scene, width: int, height: int) -> Image.Image:
    """The tinted canvas with pixel noise and a few clutter marks (grey strokes and dots)."""
    gen = np.random.default_rng(scene.noise_seed)
    noise = gen.normal(0.0, 6.0, (height, width, 1))  # (H, W, 1): grey noise, same on RGB
    pixels = np.clip(np.asarray(scene.background, np.float32) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(int(gen.integers(3, 9))):
        x, y = gen.uniform(0, width), gen.uniform(0, height)
        grey = tuple([int(gen.integers(120, 190))] * 3)
        if gen.random() < 0.5:  # a short stroke
            dx, dy = gen.uniform(-0.12, 0.12, 2) * short
            draw.line((x, y, x + dx, y + dy), fill=grey, width=max(1, short // 64))
        else:  # a dot
            r = max(1.0, short / 64)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=grey)
    return image


def _texture(
    obj: SceneObject, box: tuple[int, int, int, int], size: tuple[int, int]
) -> Image.Image:
    """The shape's fill over the whole canvas: its colour, with stripes or dots of a darker shade."""
    fill = COLOURS[obj.colour]
    dark = tuple(int(v * 0.6) for v in fill)
    layer = Image.new("RGB", size, fill)
    if obj.texture == "solid":
        return layer
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    step = max(3, (x1 - x0) // 4)
    if obj.texture == "striped":
        for x in range(x0 - (y1 - y0), x1, step):  # diagonal stripes
            draw.line((x, y1, x + (y1 - y0), y0), fill=dark, width=max(1, step // 3))
    else:  # dotted
        r = max(1, step // 4)
        for x in range(x0 + step // 2, x1, step):
            for y in range(y0 + step // 2, y1, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=dark)
    return layer


def word_font_px(scene: Scene, size: int) -> int:
    """Font height in pixels of the scene's word when drawn with long side ``size``."""
    return max(3, min(canvas_size(scene, size)) // WORD_SIZES[scene.word_size])


def legible(scene: Scene, size: int) -> bool:
    """Whether the scene's word (if any) can be read when drawn with long side ``size``."""
    return scene.word is None or word_font_px(scene, size) >= MIN_LEGIBLE_PX


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Draw a scene as an RGB image whose long side is ``size`` pixels, at the scene's aspect."""
    width, height = canvas_size(scene, size)
    image = _background(scene, width, height)
    half_w, half_h = width / 2, height / 2
    short = min(width, height)
    for obj in scene.objects:
        col, row = obj.cell % 2, obj.cell // 2
        cx = col * half_w + half_w / 2 + obj.offset[0] * half_w
        cy = row * half_h + half_h / 2 + obj.offset[1] * half_h
        r = short * 0.17 * obj.scale
        box = (round(cx - r), round(cy - r), round(cx + r), round(cy + r))
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        if obj.shape == "circle":
            draw.ellipse(box, fill=255)
        elif obj.shape == "square":
            draw.rectangle(box, fill=255)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=255)
        image.paste(_texture(obj, box, (width, height)), (0, 0), mask)
    if scene.word is not None and scene.word_cell is not None:
        font = ImageFont.load_default(size=word_font_px(scene, size))
        x = (scene.word_cell % 2) * half_w + width / 16
        y = (scene.word_cell // 2) * half_h + half_h / 3
        ImageDraw.Draw(image).text((x, y), scene.word, fill=(20, 20, 20), font=font)
    return image


def render_square(scene: Scene, size: int) -> Image.Image:
    """The scene resized to ``size`` x ``size`` (squashed, as an image processor's resize does):
    what the zoo's encoders see in pretraining and probing, where images are batched as one tensor."""
    return render_scene(scene, size).resize((size, size), Image.Resampling.BICUBIC)
