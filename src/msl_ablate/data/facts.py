"""Facts about a scene that questions are written from: categories, names, unambiguity, grid.

Shared by the training data's question writers (``data/``) and the benchmark suite
(``evaluation/suite``), so that both ask about the world in the same terms.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from msl_ablate.data.world import COLOURS, SHAPES, Scene, SceneObject, sample_scene

T = TypeVar("T")

# Every object category of the world ("red circle", ...), in a fixed order (ties break on it).
CATEGORIES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Enough draws that a writer which rejects most scenes still finds one; more means a bug.
MAX_TRIES = 1000


def label(obj: SceneObject) -> str:
    """``"red circle"``."""
    return f"{obj.colour} {obj.shape}"


def present(scene: Scene) -> set[str]:
    """The categories present in a scene."""
    return {label(o) for o in scene.objects}


def unique_objects(scene: Scene, by: str = "label") -> list[SceneObject]:
    """Objects that a question can name unambiguously.

    Args:
        scene: The scene.
        by: ``label`` (colour and shape), ``shape`` or ``colour``: what the question names.

    Returns:
        The objects whose named attribute(s) no other object shares, in cell order.
    """
    key: Callable[[SceneObject], str] = label if by == "label" else lambda o: getattr(o, by)
    names = [key(o) for o in scene.objects]
    return [o for o in scene.objects if names.count(key(o)) == 1]


def row(cell: int) -> int:
    """0 for the top row of the 2x2 grid, 1 for the bottom row."""
    return cell // 2


def col(cell: int) -> int:
    """0 for the left column of the 2x2 grid, 1 for the right column."""
    return cell % 2


def other_values(rng: random.Random, truth: str, pool: tuple[str, ...], k: int) -> list[str]:
    """``k`` distinct values of ``pool`` other than ``truth``, in random order."""
    return rng.sample([v for v in pool if v != truth], k)


def draw(
    rng: random.Random,
    write: Callable[[Scene, random.Random], T | None],
    max_objects: int = 4,
    word_prob: float = 0.5,
) -> tuple[Scene, T]:
    """Sample scenes until ``write`` can ask its question about one.

    Args:
        rng: The benchmark's random generator.
        write: Returns what it writes about a scene, or None if the scene does not fit.
        max_objects: Largest number of shapes per scene.
        word_prob: Probability that a scene has a word.

    Returns:
        The scene and what ``write`` returned.

    Raises:
        RuntimeError: No fitting scene in ``MAX_TRIES`` draws (a writer that never fits).
    """
    for _ in range(MAX_TRIES):
        scene = sample_scene(rng, max_objects=max_objects, word_prob=word_prob)
        out = write(scene, rng)
        if out is not None:
            return scene, out
    raise RuntimeError(
        f"writer {getattr(write, '__name__', write)!r} found no fitting scene in {MAX_TRIES} "
        f"draws (max_objects={max_objects}, word_prob={word_prob})"
    )
