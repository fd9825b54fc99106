"""The scene world: deterministic scenes and renders, nuisance that varies, text legible by size."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from msl_ablate.data.world import (
    ASPECTS,
    TEXTURES,
    WORD_SIZES,
    Scene,
    SceneObject,
    canvas_size,
    legible,
    render_scene,
    render_square,
    sample_scene,
)


def test_scenes_and_renders_are_deterministic_from_the_seed() -> None:
    a, b = sample_scene(random.Random(7)), sample_scene(random.Random(7))
    assert a == b and a.noise_seed == b.noise_seed
    assert render_scene(a, 96).tobytes() == render_scene(b, 96).tobytes()


def test_nuisance_varies_across_scenes() -> None:
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(300)]
    assert {s.aspect for s in scenes} == set(ASPECTS)
    assert {o.texture for s in scenes for o in s.objects} == set(TEXTURES)
    assert {s.word_size for s in scenes if s.word} == set(WORD_SIZES)
    assert len({s.background for s in scenes}) > 200


@pytest.mark.parametrize(("aspect", "size"), [((1, 1), (64, 64)), ((16, 9), (128, 72)),
                                              ((3, 4), (96, 128))])  # fmt: skip
def test_the_long_side_is_the_size_at_the_scenes_aspect(aspect, size) -> None:
    scene = Scene((SceneObject("circle", "red", 0),), aspect=aspect)
    assert canvas_size(scene, max(size)) == size
    assert render_scene(scene, max(size)).size == size
    assert render_square(scene, 48).size == (48, 48)


def test_a_texture_changes_the_pixels_inside_the_shape_only() -> None:
    solid = Scene((SceneObject("square", "blue", 0, texture="solid"),))
    striped = Scene((SceneObject("square", "blue", 0, texture="striped"),))
    a, b = (np.asarray(render_scene(s, 128), np.int16) for s in (solid, striped))
    changed = np.abs(a - b).sum(-1) > 0  # (H, W)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 200
    assert xs.max() < 64 and ys.max() < 64  # inside the top-left region, where the square is


def _text_height(scene: Scene, size: int) -> int:
    """Rows holding the word's near-black pixels (shapes and clutter are lighter)."""
    pixels = np.asarray(render_scene(scene, size), np.int16).max(-1)  # (H, W)
    rows = np.nonzero((pixels < 80).any(1))[0]
    return 0 if len(rows) == 0 else int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("aspect", [(1, 1), (16, 9)])
def test_large_words_are_legible_at_64_and_small_ones_only_from_128(aspect) -> None:
    base = Scene((SceneObject("circle", "red", 0),), word="dog", word_cell=3, aspect=aspect)
    small, large = (dataclasses.replace(base, word_size=s) for s in ("small", "large"))
    assert _text_height(small, 64) <= 4 and _text_height(large, 64) >= 8  # the demo's 64 px
    assert _text_height(small, 128) >= 5  # the resolution axis decides whether it can be read
    assert _text_height(small, 256) >= 2 * _text_height(small, 128) - 2


def test_legible_follows_the_rendered_text_height() -> None:
    base = Scene((SceneObject("circle", "red", 0),), word="dog", word_cell=3)
    small, large = (dataclasses.replace(base, word_size=s) for s in ("small", "large"))
    wide_small = dataclasses.replace(small, aspect=(16, 9))
    assert legible(large, 64) and not legible(small, 64)
    assert legible(small, 128) and not legible(wide_small, 128) and legible(wide_small, 256)
    assert legible(dataclasses.replace(base, word=None, word_cell=None), 8)  # nothing to read
