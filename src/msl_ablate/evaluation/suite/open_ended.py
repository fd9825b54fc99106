"""Open-ended suite benchmarks: VQAv2-, GQA-, TextVQA- and MM-Vet-like questions.

Each ``build_*`` takes the benchmark's random generator and its size and returns
:class:`~msl_ablate.evaluation.suite.scenes.Item` values whose ``annotations`` are records for
the scoring package's ``write_*`` function of that benchmark.
"""

from __future__ import annotations

import random

from msl_ablate.data.benchmark_questions import GQA_WRITERS, ask_word_at
from msl_ablate.data.facts import (
    NUMBER_WORDS,
    draw,
    other_values,
)
from msl_ablate.data.synthetic import QA, QUESTION_WRITERS, ask_word, caption
from msl_ablate.data.world import COLOURS, WORDS, Scene
from msl_ablate.evaluation.scoring.vqa_accuracy import NUM_ANNOTATORS
from msl_ablate.evaluation.suite.scenes import Item

VQA_TYPES = ("colour", "shape", "count", "exists")  # the training set's writers
ANSWER_TYPES = {"colour": "other", "shape": "other", "count": "number", "exists": "yes/no"}
QUESTION_TYPES = {
    "colour": "what color is the",
    "shape": "what shape is the",
    "count": "how many",
    "exists": "is there a",
}
# Wrong answers annotators give (a near miss of the right one).
CONFUSIONS: dict[str, tuple[str, ...]] = {
    "circle": ("ball", "oval"),
    "square": ("box", "rectangle"),
    "triangle": ("pyramid", "arrow"),
    **{c: tuple(other for other in COLOURS if other != c) for c in COLOURS},
    "yes": ("no",),
    "no": ("yes",),
    "1": ("2",),
    "2": ("1", "3"),
    "3": ("2", "4"),
    "4": ("3", "5"),
}
UNANSWERABLE = "unanswerable"  # TextVQA's answer for an unreadable image


def surface_forms(answer: str) -> list[str]:
    """Other spellings of an answer that the official normalisation maps back to it."""
    forms = [answer.capitalize(), f"{answer}.", f"the {answer}"]
    if answer.isdigit() and int(answer) in NUMBER_WORDS:
        forms.append(NUMBER_WORDS[int(answer)])  # "two" vs "2"
    return forms


def annotator_answers(rng: random.Random, answer: str, confusions: tuple[str, ...]) -> list[str]:
    """Ten annotator answers with realistic noise: 8-10 right (some spelt differently), the
    rest near misses, so the right answer always scores 100% VQA accuracy (>= 4 agree)."""
    n_right = rng.choice((8, 9, 10))
    right = [answer] * n_right
    for k in rng.sample(range(n_right), 2):
        right[k] = rng.choice(surface_forms(answer))
    answers = right + [rng.choice(confusions) for _ in range(NUM_ANNOTATORS - n_right)]
    rng.shuffle(answers)
    return answers


def build_vqav2(rng: random.Random, n: int) -> list[Item]:
    """VQAv2-like: colour, shape, count and yes/no questions, ten noisy answers each."""
    items = []
    for i in range(n):
        qtype = VQA_TYPES[i % len(VQA_TYPES)]
        scene, qa = draw(rng, QUESTION_WRITERS[qtype])
        qid, image = i + 1, f"COCO_val2014_{i + 1:012d}.png"
        item = Item(image, scene)
        item.questions.append({"question_id": qid, "image": image, "text": qa.question})
        item.annotations.append(
            {
                "question_id": qid,
                "image_id": i + 1,
                "question": qa.question,
                "question_type": QUESTION_TYPES[qtype],
                "answer_type": ANSWER_TYPES[qtype],
                "answers": annotator_answers(rng, qa.answer, CONFUSIONS[qa.answer]),
            }
        )
        items.append(item)
    return items


def build_gqa(rng: random.Random, n: int) -> list[Item]:
    """GQA-like: spatial relations (verify / query / choose) and two-object logic."""
    items = []
    for i in range(n):
        writer = GQA_WRITERS[i % len(GQA_WRITERS)]
        scene, (qa, (structural, semantic, detailed)) = draw(rng, writer)
        qid, image_id = f"{20_000_000 + i + 1}", f"n{100_000 + i}"
        item = Item(f"{image_id}.png", scene)
        item.questions.append({"question_id": qid, "image": item.image, "text": qa.question})
        item.annotations.append(
            {
                "question_id": qid,
                "question": qa.question,
                "image_id": image_id,
                "answer": qa.answer,
                "full_answer": f"{qa.answer.capitalize()}.",
                "structural": structural,
                "semantic": semantic,
                "detailed": detailed,
            }
        )
        items.append(item)
    return items


def build_textvqa(rng: random.Random, n: int) -> list[Item]:
    """TextVQA-like: read the rendered word (small at low resolution: resolution matters)."""
    writers = (ask_word, ask_word_at)
    items = []
    for i in range(n):
        # Up to 3 shapes so that a cell is free for the word, which every scene here has.
        scene, qa = draw(rng, writers[i % len(writers)], max_objects=3, word_prob=1.0)
        qid, image_id = 34_602 + i, f"{rng.getrandbits(64):016x}"
        item = Item(f"{image_id}.png", scene)
        item.questions.append({"question_id": qid, "image": item.image, "text": qa.question})
        near = tuple(other_values(rng, qa.answer, WORDS, 2)) + (UNANSWERABLE,)
        answers = annotator_answers(rng, qa.answer, near)
        item.annotations.append(
            {"question_id": qid, "question": qa.question, "image_id": image_id, "answers": answers}
        )
        items.append(item)
    return items


def describe(scene: Scene, rng: random.Random) -> QA:
    return QA("rec", "Describe the image.", caption(scene))


def build_mmvet(rng: random.Random, n: int) -> list[Item]:
    """MM-Vet-like: open descriptions graded externally (``{"v1_<k>": {...}}`` records)."""
    items = []
    for i in range(n):
        scene, qa = draw(rng, describe)
        qid = f"v1_{i}"
        item = Item(f"{qid}.png", scene)
        item.questions.append({"question_id": qid, "image": item.image, "text": qa.question})
        item.annotations.append(
            {
                "question_id": qid,
                "imagename": item.image,
                "capability": ["rec", "spat"],
                "question": qa.question,
                "answer": qa.answer,
            }
        )
        items.append(item)
    return items
