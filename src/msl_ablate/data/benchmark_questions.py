"""Questions in the style of each benchmark about one scene: GQA's relations, TextVQA's reading,
MME's yes/no pairs, ScienceQA's and MMBench's multiple choice.

Pure functions of a ``Scene`` and a random generator (None when the scene cannot be asked that
question). The suite (``evaluation/suite``) wraps them in each benchmark's files and ids; the
instruction mix (``data/instructions.py``) trains on them, as LLaVA-1.5 trains on the training
splits of the benchmarks it is tested on.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from msl_ablate.data.facts import CATEGORIES, col, label, other_values, present, row, unique_objects
from msl_ablate.data.synthetic import QA
from msl_ablate.data.world import CELLS, COLOURS, SHAPES, WORDS, Scene


# GQA-like relation questions: (structural, semantic, detailed) types and a writer each.
def _pair(scene: Scene, rng: random.Random, axis: str):
    """Two unambiguous objects on different sides along ``axis`` (``x`` or ``y``)."""
    objs = unique_objects(scene)
    side = col if axis == "x" else row
    pairs = [(a, b) for a in objs for b in objs if side(a.cell) != side(b.cell)]
    return rng.choice(pairs) if pairs else None


def _relation(a_cell: int, b_cell: int, axis: str) -> str:
    if axis == "x":
        return "left" if col(a_cell) < col(b_cell) else "right"
    return "above" if row(a_cell) < row(b_cell) else "below"


def _phrase(relation: str) -> str:
    return f"to the {relation} of" if relation in ("left", "right") else relation


OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def gqa_verify(scene: Scene, rng: random.Random) -> tuple[QA, tuple[str, str, str]] | None:
    axis = rng.choice("xy")
    pair = _pair(scene, rng, axis)
    if pair is None:
        return None
    a, b = pair
    truth = _relation(a.cell, b.cell, axis)
    asked = truth if rng.random() < 0.5 else OPPOSITE[truth]
    question = f"Is the {label(a)} {_phrase(asked)} the {label(b)}?"
    return QA("verify", question, "yes" if asked == truth else "no"), ("verify", "rel", "relVerify")


def gqa_choose(scene: Scene, rng: random.Random) -> tuple[QA, tuple[str, str, str]] | None:
    axis = rng.choice("xy")
    pair = _pair(scene, rng, axis)
    if pair is None:
        return None
    a, b = pair
    first, second = ("left", "right") if axis == "x" else ("above", "below")
    how = f"{_phrase(first)} or {_phrase(second)}"
    answer = _relation(a.cell, b.cell, axis)
    return QA("choose", f"Is the {label(a)} {how} the {label(b)}?", answer), (
        "choose",
        "rel",
        "relChooser",
    )


def gqa_query(scene: Scene, rng: random.Random) -> tuple[QA, tuple[str, str, str]] | None:
    # "What shape is to the left of X?": exactly one object may lie on that side of X.
    options = []
    for a in unique_objects(scene):
        for rel in ("left", "right", "above", "below"):
            axis, side = ("x", col) if rel in ("left", "right") else ("y", row)
            others = [
                o
                for o in scene.objects
                if side(o.cell) != side(a.cell) and _relation(o.cell, a.cell, axis) == rel
            ]
            if len(others) == 1:
                options.append((a, rel, others[0]))
    if not options:
        return None
    a, rel, other = rng.choice(options)
    question = f"What shape is {_phrase(rel)} the {label(a)}?"
    return QA("query", question, other.shape), ("query", "rel", "relS")


def gqa_logical(scene: Scene, rng: random.Random) -> tuple[QA, tuple[str, str, str]] | None:
    have = sorted({label(o) for o in scene.objects})
    lacking = sorted(set(CATEGORIES) - set(have))
    x = rng.choice(have)
    both = rng.random() < 0.5 and len(have) > 1
    y = rng.choice([h for h in have if h != x]) if both else rng.choice(lacking)
    question = f"Are there both a {x} and a {y} in the image?"
    return QA("logical", question, "yes" if both else "no"), ("logical", "obj", "twoAnd")


GQA_WRITERS: tuple[Callable, ...] = (gqa_verify, gqa_query, gqa_choose, gqa_logical)


def ask_word_at(scene: Scene, rng: random.Random) -> QA | None:
    if scene.word is None or scene.word_cell is None:
        return None
    return QA("word", f"What is written at the {CELLS[scene.word_cell]}?", scene.word)


MME_SUFFIX = " Please answer yes or no."  # part of every released MME question


# MME writers: (question whose answer is yes, question whose answer is no) about one scene.
def mme_existence(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    have = sorted(present(scene))
    absent = [c for c in CATEGORIES if c not in have]
    return (
        f"Is there a {rng.choice(have)} in this image?",
        f"Is there a {rng.choice(absent)} in this image?",
    )


def mme_count(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    n = len(scene.objects)
    wrong = rng.choice([k for k in (n - 1, n + 1) if 1 <= k <= len(CELLS)])
    return (
        f"Is the number of shapes in this image {n}?",
        f"Is the number of shapes in this image {wrong}?",
    )


def mme_position(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    objs = unique_objects(scene)
    if not objs:
        return None
    obj = rng.choice(objs)
    wrong = rng.choice([c for c in range(len(CELLS)) if c != obj.cell])
    return (
        f"Is the {label(obj)} at the {CELLS[obj.cell]} of this image?",
        f"Is the {label(obj)} at the {CELLS[wrong]} of this image?",
    )


def mme_color(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    objs = unique_objects(scene, by="shape")
    if not objs:
        return None
    obj = rng.choice(objs)
    wrong = other_values(rng, obj.colour, tuple(COLOURS), 1)[0]
    return (
        f"Is the {obj.shape} in this image {obj.colour}?",
        f"Is the {obj.shape} in this image {wrong}?",
    )


def mme_ocr(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    if scene.word is None:
        return None
    wrong = other_values(rng, scene.word, WORDS, 1)[0]
    return (
        f'Is the word "{scene.word}" written in this image?',
        f'Is the word "{wrong}" written in this image?',
    )


MME_WRITERS = {
    "existence": mme_existence,
    "count": mme_count,
    "position": mme_position,
    "color": mme_color,
    "OCR": mme_ocr,
}


# (question, correct option, wrong options, hint) about one scene.
Choice = tuple[str, str, list[str], str]


GRID_HINT = "The image is split into four cells: top left, top right, bottom left, bottom right."


def options_text(options: list[str]) -> str:
    """``"A. red\\nB. blue"``."""
    return "\n".join(f"{string.ascii_uppercase[k]}. {o}" for k, o in enumerate(options))


# ScienceQA-like writers; the number of options varies (2-4) as in ScienceQA.
def sqa_colour(scene: Scene, rng: random.Random) -> Choice | None:
    objs = unique_objects(scene, by="shape")
    if not objs:
        return None
    obj = rng.choice(objs)
    wrong = other_values(rng, obj.colour, tuple(COLOURS), rng.randint(1, 3))
    n = len(scene.objects)
    hint = f"The image shows {n} shape{'s' if n > 1 else ''}."
    return f"Which colour is the {obj.shape}?", obj.colour, wrong, hint


def sqa_position(scene: Scene, rng: random.Random) -> Choice | None:
    obj = rng.choice(scene.objects)
    wrong = other_values(rng, obj.shape, SHAPES, rng.randint(1, 2))
    return f"Which shape is at the {CELLS[obj.cell]}?", obj.shape, wrong, GRID_HINT


def sqa_count(scene: Scene, rng: random.Random) -> Choice | None:
    n = str(len(scene.objects))
    wrong = other_values(rng, n, ("1", "2", "3", "4"), rng.randint(1, 3))
    return "How many shapes are there?", n, wrong, "Count every shape, whatever its colour."


def sqa_word(scene: Scene, rng: random.Random) -> Choice | None:
    if scene.word is None:
        return None
    wrong = other_values(rng, scene.word, WORDS, rng.randint(1, 3))
    return "Which word is written in the image?", scene.word, wrong, "Select the best answer."


def sqa_text_only(rng: random.Random) -> Choice:
    """A question without an image (ScienceQA has them; ``sqa_img`` must skip them)."""
    kind, right, pools = rng.choice(
        [
            ("shape", rng.choice(SHAPES), (COLOURS, WORDS)),
            ("colour", rng.choice(list(COLOURS)), (SHAPES, WORDS)),
        ]
    )
    wrong = [rng.choice(list(pool)) for pool in pools]
    return f"Which word names a {kind}?", right, wrong, "Words can name shapes, colours or things."


# MMBench-like writers: four options each, so every question has four circular copies.
def mmb_colour(scene: Scene, rng: random.Random) -> Choice | None:
    objs = unique_objects(scene, by="shape")
    if not objs:
        return None
    obj = rng.choice(objs)
    return (
        f"What colour is the {obj.shape}?",
        obj.colour,
        other_values(rng, obj.colour, tuple(COLOURS), 3),
        "",
    )


def mmb_position(scene: Scene, rng: random.Random) -> Choice | None:
    objs = unique_objects(scene)
    if not objs:
        return None
    obj = rng.choice(objs)
    where = CELLS[obj.cell]
    return f"Where is the {label(obj)}?", where, other_values(rng, where, CELLS, 3), GRID_HINT


def mmb_word(scene: Scene, rng: random.Random) -> Choice | None:
    if scene.word is None:
        return None
    return (
        "Which word is written in the image?",
        scene.word,
        other_values(rng, scene.word, WORDS, 3),
        "",
    )


RELATIONS = ("to the left", "to the right", "above", "below")


def mmb_relation(scene: Scene, rng: random.Random) -> Choice | None:
    # Same row or same column only, so exactly one of the four relations holds.
    objs = unique_objects(scene)
    pairs = [
        (a, b)
        for a in objs
        for b in objs
        if a != b and (row(a.cell) == row(b.cell) or col(a.cell) == col(b.cell))
    ]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    if row(a.cell) == row(b.cell):
        truth = RELATIONS[0] if col(a.cell) < col(b.cell) else RELATIONS[1]
    else:
        truth = RELATIONS[2] if row(a.cell) < row(b.cell) else RELATIONS[3]
    question = f"Where is the {label(a)} relative to the {label(b)}?"
    return question, truth, other_values(rng, truth, RELATIONS, 3), GRID_HINT
