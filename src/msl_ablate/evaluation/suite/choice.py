"""Multiple-choice suite benchmarks: ScienceQA-IMG-like and MMBench-like.

The question text lists the options as LLaVA's prompts do: ScienceQA ``Context: <hint>``,
the question, then ``A. <option>`` lines; MMBench ``<hint>`` (if any), the question, then
the options. The answer-format instruction is the benchmark spec's ``prompt_suffix``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from msl_ablate.data.benchmark_questions import (
    mmb_colour,
    mmb_position,
    mmb_relation,
    mmb_word,
    options_text,
    sqa_colour,
    sqa_count,
    sqa_position,
    sqa_text_only,
    sqa_word,
)
from msl_ablate.data.facts import draw
from msl_ablate.evaluation.scoring.mmbench import LETTERS, circular_copies
from msl_ablate.evaluation.suite.scenes import Item


def _shuffled(rng: random.Random, right: str, wrong: list[str]) -> tuple[list[str], int]:
    options = [right, *wrong]
    rng.shuffle(options)
    return options, options.index(right)


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
