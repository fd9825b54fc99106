"""Multiple-choice suite benchmarks: ScienceQA-IMG-like and MMBench-like.

The question text lists the options as LLaVA's prompts do: ScienceQA ``Context: <hint>``,
the question, then ``A. <option>`` lines; MMBench ``<hint>`` (if any), the question, then
the options. The answer-format instruction is the benchmark spec's ``prompt_suffix``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

from msl_ablate.data.world import CELLS, COLOURS, SHAPES, WORDS, Scene
from msl_ablate.evaluation.scoring.mmbench import LETTERS, circular_copies
from msl_ablate.evaluation.suite.scenes import (
    Item,
    col,
    draw,
    label,
    other_values,
    row,
    unique_objects,
)

# (question, correct option, wrong options, hint) about one scene.
Choice = tuple[str, str, list[str], str]
GRID_HINT = "The image is split into four cells: top left, top right, bottom left, bottom right."


def options_text(options: list[str]) -> str:
    """``"A. red\\nB. blue"``."""
    return "\n".join(f"{string.ascii_uppercase[k]}. {o}" for k, o in enumerate(options))


def _shuffled(rng: random.Random, right: str, wrong: list[str]) -> tuple[list[str], int]:
    options = [right, *wrong]
    rng.shuffle(options)
    return options, options.index(right)


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


SQA_WRITERS: dict[str, tuple[Callable, str]] = {
    "colour": (sqa_colour, "natural science"),
    "count": (sqa_count, "natural science"),
    "position": (sqa_position, "social science"),
    "word": (sqa_word, "language science"),
}
TEXT_ONLY_EVERY = 6  # one problem in six has no image


def build_sqa(rng: random.Random, n: int) -> list[Item]:
    """ScienceQA-like problems (``test`` split), about one in six without an image."""
    kinds = list(SQA_WRITERS)
    items = []
    for i in range(n):
        pid = str(i + 1)
        if i % TEXT_ONLY_EVERY == TEXT_ONLY_EVERY - 1:
            scene, (question, right, wrong, hint) = None, sqa_text_only(rng)
            subject, image = "language science", None
        else:
            kind = kinds[i % len(kinds)]
            writer, subject = SQA_WRITERS[kind]
            scene, (question, right, wrong, hint) = draw(rng, writer)
            image = f"{pid}/image.png"  # ScienceQA keeps one folder per problem
        choices, answer = _shuffled(rng, right, wrong)
        text = f"Context: {hint}\n{question}\n{options_text(choices)}"
        item = Item(image, scene)
        line: dict[str, Any] = {"question_id": pid, "text": text}
        if image is not None:
            line["image"] = image
        item.questions.append(line)
        item.annotations.append(
            {
                "pid": pid,
                "question": question,
                "choices": choices,
                "answer": answer,
                "hint": hint,
                "image": None if image is None else "image.png",
                "subject": subject,
                "split": "test",
            }
        )
        items.append(item)
    return items


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


MMB_WRITERS: dict[str, tuple[Callable, str]] = {
    "attribute_recognition": (mmb_colour, "finegrained_perception_instance"),
    "object_localization": (mmb_position, "finegrained_perception_instance"),
    "ocr": (mmb_word, "finegrained_perception_instance"),
    "spatial_relationship": (mmb_relation, "finegrained_perception_cross_instance"),
}


def mmbench_text(rec: dict[str, Any]) -> str:
    """The question text of one TSV row as LLaVA's ``model_vqa_mmbench`` builds it."""
    options = [rec[k] for k in LETTERS if rec.get(k)]
    text = f"{rec['hint']}\n{rec['question']}" if rec.get("hint") else rec["question"]
    return f"{text}\n{options_text(options)}"


def build_mmbench(rng: random.Random, n: int) -> list[Item]:
    """MMBench-like: ``n // 4`` four-option questions, each with its 3 circular copies."""
    categories = list(MMB_WRITERS)
    items = []
    for index in range(max(1, n // len(LETTERS))):
        category = categories[index % len(categories)]
        writer, l2 = MMB_WRITERS[category]
        scene, (question, right, wrong, hint) = draw(rng, writer)
        options, answer = _shuffled(rng, right, wrong)
        record = {
            "index": index,
            "question": question,
            "hint": hint,
            "answer": LETTERS[answer],
            "category": category,
            "l2-category": l2,
            **dict(zip(LETTERS, options, strict=True)),
        }
        item = Item(f"{index:06d}.png", scene)
        for rec in circular_copies([record]):
            item.annotations.append(rec)
            item.questions.append(
                {"question_id": rec["index"], "image": item.image, "text": mmbench_text(rec)}
            )
        items.append(item)
    return items
