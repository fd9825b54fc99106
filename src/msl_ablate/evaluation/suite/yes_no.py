"""Yes/no suite benchmarks: POPE-like object existence and MME-like paired questions.

POPE's three splits ask about the same images and the same present objects, and differ in
how the absent object of each "no" question is chosen (the released POPE's sampling):

* ``random``: any absent category;
* ``popular``: the absent category most frequent over the benchmark's images;
* ``adversarial``: an absent category *similar* to a present one (same colour or same shape:
  the confusion a model that binds colour and shape loosely makes), the one that co-occurs
  most with the present objects first.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from msl_ablate.data.benchmark_questions import MME_SUFFIX, MME_WRITERS
from msl_ablate.data.facts import CATEGORIES, draw, present
from msl_ablate.data.world import Scene, sample_scene
from msl_ablate.evaluation.scoring.mme import mme_question_id
from msl_ablate.evaluation.scoring.pope import SPLITS as POPE_SPLITS
from msl_ablate.evaluation.scoring.pope import pope_question_id
from msl_ablate.evaluation.suite.scenes import Item

MME_CATEGORIES = ("existence", "count", "position", "color", "OCR")


def _pope_negatives(
    scenes: list[Scene], rng: random.Random
) -> Callable[[Scene, random.Random], dict[str, str]]:
    """Return a function choosing the absent category of each split for one scene."""
    freq = Counter(c for s in scenes for c in present(s))
    cooc = Counter((a, b) for s in scenes for a in present(s) for b in present(s) if a != b)
    tie = {c: k for k, c in enumerate(rng.sample(CATEGORIES, len(CATEGORIES)))}

    def negatives(scene: Scene, rng: random.Random) -> dict[str, str]:
        have = present(scene)
        absent = [c for c in CATEGORIES if c not in have]
        parts = [c.split() for c in have]

        def similar(c: str) -> bool:
            colour, shape = c.split()
            return any(colour == p[0] or shape == p[1] for p in parts)

        def together(c: str) -> int:
            return sum(cooc[p, c] for p in have)

        return {
            "adversarial": min(absent, key=lambda c: (not similar(c), -together(c), tie[c])),
            "popular": min(absent, key=lambda c: (-freq[c], tie[c])),
            "random": rng.choice(absent),
        }

    return negatives


def build_pope(rng: random.Random, n: int) -> list[Item]:
    """POPE-like: one "yes" and one "no" question per image and split (``n`` in all)."""
    n_images = max(1, n // (2 * len(POPE_SPLITS)))
    scenes = [sample_scene(rng) for _ in range(n_images)]
    negatives_of = _pope_negatives(scenes, rng)
    next_id = dict.fromkeys(POPE_SPLITS, 1)  # ids restart in every split, as released
    items = []
    for i, scene in enumerate(scenes):
        item = Item(f"COCO_val2014_{i + 1:012d}.png", scene)
        positive = rng.choice(sorted(present(scene)))
        negatives = negatives_of(scene, rng)
        for split in POPE_SPLITS:
            pair = [(positive, "yes"), (negatives[split], "no")]
            rng.shuffle(pair)
            for obj, answer in pair:
                qid, next_id[split] = next_id[split], next_id[split] + 1
                text = f"Is there a {obj} in the image?"
                item.questions.append(
                    {"question_id": pope_question_id(split, qid), "image": item.image, "text": text}
                )
                item.annotations.append(
                    {
                        "split": split,
                        "question_id": qid,
                        "image": item.image,
                        "text": text,
                        "label": answer,
                    }
                )
        items.append(item)
    return items


def build_mme(rng: random.Random, n: int) -> list[Item]:
    """MME-like: per category, images with a "yes" and a "no" question each (about ``n``)."""
    per_category = max(1, -(-n // (2 * len(MME_CATEGORIES))))
    items = []
    for category in MME_CATEGORIES:
        for i in range(per_category):
            scene, (yes_q, no_q) = draw(rng, MME_WRITERS[category])
            item = Item(f"{category}_{i:04d}.png", scene)
            pair = [(yes_q, "Yes"), (no_q, "No")]
            rng.shuffle(pair)
            for k, (question, answer) in enumerate(pair):
                text = question + MME_SUFFIX
                qid = mme_question_id(category, item.image, k)
                item.questions.append({"question_id": qid, "image": item.image, "text": text})
                item.annotations.append(
                    {"category": category, "image": item.image, "question": text, "answer": answer}
                )
            items.append(item)
    return items
