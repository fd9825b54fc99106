"""A synthetic LLaVA-format dataset drawn from the scene world, deterministic from a seed.

Writes ``images/*.png`` and three LLaVA JSON files: ``captions.json`` (stage 1),
``instruct.json`` (stage 2) and ``eval.json`` (held out). Records follow LLaVA's layout
(``id``, ``image``, ``conversations``); eval records also carry ``question_type`` and
``answer`` so that scores can be broken down by type.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.data.world import (
    CELLS,
    COLOURS,
    SHAPES,
    WORLD_VERSION,
    Scene,
    render_scene,
    sample_scene,
)
from msl_ablate.utils.files import stable_hash, write_json_atomic
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

SPLIT_FILES = {"captions": "captions.json", "instruct": "instruct.json", "eval": "eval.json"}
MANIFEST = "manifest.json"
# Bump when the generator's output changes for the same arguments: cached datasets are rebuilt.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class QA:
    """One question about a scene with its single correct answer."""

    question_type: str
    question: str
    answer: str


def _count(scene: Scene, **attrs: str) -> int:
    return sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)


def ask_colour(scene: Scene, rng: random.Random) -> QA | None:
    unique = [o for o in scene.objects if _count(scene, shape=o.shape) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    return QA("colour", f"What colour is the {obj.shape}?", obj.colour)


def ask_shape(scene: Scene, rng: random.Random) -> QA | None:
    unique = [o for o in scene.objects if _count(scene, colour=o.colour) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    return QA("shape", f"What shape is the {obj.colour} object?", obj.shape)


def ask_count(scene: Scene, rng: random.Random) -> QA | None:
    return QA("count", "How many shapes are there?", str(len(scene.objects)))


def ask_exists(scene: Scene, rng: random.Random) -> QA | None:
    # Balanced yes/no: pick the answer first, then a colour that makes it true.
    present = sorted({o.colour for o in scene.objects})
    absent = sorted(set(COLOURS) - set(present))
    want_yes = rng.random() < 0.5 or not absent
    colour = rng.choice(present if want_yes else absent)
    return QA("exists", f"Is there a {colour} shape?", "yes" if want_yes else "no")


def ask_position(scene: Scene, rng: random.Random) -> QA | None:
    obj = rng.choice(scene.objects)
    if _count(scene, shape=obj.shape, colour=obj.colour) != 1:
        return None
    return QA("position", f"Where is the {obj.colour} {obj.shape}?", CELLS[obj.cell])


def ask_word(scene: Scene, rng: random.Random) -> QA | None:
    if scene.word is None:
        return None
    return QA("word", "What word is written in the image?", scene.word)


CHOICE_SUFFIX = "Answer with the option's letter from the given choices directly."
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
LETTERS = "ABCD"


def ask_choice(scene: Scene, rng: random.Random) -> QA | None:
    # LLaVA-1.5's multiple-choice format (ScienceQA, MMBench): options, then the letter.
    base = ask_colour(scene, rng) if rng.random() < 0.5 else ask_shape(scene, rng)
    if base is None:
        return None
    pool = list(COLOURS) if base.question_type == "colour" else list(SHAPES)
    options = rng.sample(pool, len(pool))
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)]
    question = "\n".join([base.question, *lines, CHOICE_SUFFIX])
    return QA("choice", question, LETTERS[options.index(base.answer)])


QUESTION_WRITERS: dict[str, Callable[[Scene, random.Random], QA | None]] = {
    "colour": ask_colour,
    "shape": ask_shape,
    "count": ask_count,
    "exists": ask_exists,
    "position": ask_position,
    "word": ask_word,
    "choice": ask_choice,
}


def caption(scene: Scene) -> str:
    """Describe every shape (and the word) in a scene, in cell order."""
    parts = [f"a {o.colour} {o.shape} at the {CELLS[o.cell]}" for o in scene.objects]
    text = ", ".join(parts)
    if scene.word is not None:
        text += f", and the word {scene.word}"
    return text[0].upper() + text[1:] + "."


def _conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [
        {"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
        {"from": "gpt", "value": answer},
    ]


def _scene_and_question(rng: random.Random, qtype: str, max_objects: int) -> tuple[Scene, QA]:
    # Resample until the scene can answer this type, so every type gets its full share.
    while True:
        scene = sample_scene(rng, max_objects=max_objects)
        qa = QUESTION_WRITERS[qtype](scene, rng)
        if qa is not None:
            return scene, qa


def generate_dataset(
    root: str | Path,
    seed: int = 0,
    image_size: int = 64,
    n_captions: int = 2000,
    n_instruct: int = 6000,
    n_eval: int = 300,
    question_types: tuple[str, ...] | list[str] = ("colour", "shape", "count", "exists"),
    max_objects: int = 4,
    short_answer_prompt_prob: float = 0.0,
) -> Path:
    """Write the synthetic dataset under ``root`` unless an identical one is there.

    Args:
        root: Output folder; a ``manifest.json`` records the arguments.
        seed: Seed of the only random generator used.
        image_size: Side of the square PNG images.
        n_captions: Stage-1 caption records.
        n_instruct: Stage-2 question/answer records (question types in equal shares).
        n_eval: Held-out evaluation records.
        question_types: Names from ``QUESTION_WRITERS``.
        max_objects: Largest number of shapes per scene.
        short_answer_prompt_prob: Probability that an open instruction question ends with
            LLaVA-1.5's short-answer prompt (``SHORT_ANSWER_PROMPT``), as its instruction mix
            does, so that benchmark prompts carrying it are in-distribution.

    Returns:
        The root folder.

    Raises:
        ValueError: An unknown question type.
    """
    unknown = [q for q in question_types if q not in QUESTION_WRITERS]
    if unknown:
        raise ValueError(
            f"data.generator.question_types: unknown {unknown}; allowed: {sorted(QUESTION_WRITERS)}"
        )
    params = {
        "seed": seed, "image_size": image_size, "n_captions": n_captions,
        "n_instruct": n_instruct, "n_eval": n_eval, "question_types": list(question_types),
        "max_objects": max_objects, "short_answer_prompt_prob": short_answer_prompt_prob,
        "version": GENERATOR_VERSION, "world": WORLD_VERSION,
    }  # fmt: skip
    types = list(question_types)

    def make(split: str, i: int, rng: random.Random) -> tuple[Scene, dict]:
        if split == "captions":
            scene = sample_scene(rng, max_objects=max_objects)
            return scene, {"conversations": _conversation("Describe the image.", caption(scene))}
        # Types cycle, so each gets an equal share of the questions.
        scene, qa = _scene_and_question(rng, types[i % len(types)], max_objects)
        question = qa.question
        # Only drawn when enabled, so the default data stay byte-identical.
        open_question = split == "instruct" and qa.question_type != "choice"
        p = short_answer_prompt_prob
        if open_question and p > 0 and rng.random() < p:
            question += f"\n{SHORT_ANSWER_PROMPT}"
        return scene, {
            "conversations": _conversation(question, qa.answer),
            "question_type": qa.question_type,
            "answer": qa.answer,
        }

    counts = {"captions": n_captions, "instruct": n_instruct, "eval": n_eval}
    return write_dataset(root, params, counts, make, seed, image_size)


# Makes one record of a split: (its scene to render, or None for a text-only record; its fields).
RecordMaker = Callable[[str, int, random.Random], tuple[Scene | None, dict]]


def write_dataset(
    root: str | Path,
    params: dict,
    counts: dict[str, int],
    make: RecordMaker,
    seed: int,
    image_size: int,
) -> Path:
    """Write a generated dataset's images, split files and manifest, unless already there.

    Args:
        root: Output folder; ``manifest.json`` (written last) records ``params``.
        params: The generator's arguments (with its version): the cache key.
        counts: Records per split (``captions``, ``instruct``, ``eval``; another split is
            written to ``<split>.json``).
        make: Draws record ``i`` of a split from the one random generator.
        seed: Seed of that generator.
        image_size: Side of the square PNG images.

    Returns:
        The root folder.
    """
    root = Path(root)
    manifest = root / MANIFEST
    if manifest.exists() and json.loads(manifest.read_text())["params"] == params:
        return root
    # Jobs of a parallel sweep start together: one writes the images, the others wait for it.
    with hold(root.with_name(f".{root.name}.lock"), f"the dataset {root}"):
        if manifest.exists() and json.loads(manifest.read_text())["params"] == params:
            return root
        return _write_dataset(root, params, counts, make, seed, image_size)


def _write_dataset(
    root: Path, params: dict, counts: dict[str, int], make: RecordMaker, seed: int, image_size: int
) -> Path:
    manifest = root / MANIFEST
    log.info("Generating synthetic dataset in %s (%s)", root, params)
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {name: [] for name in [*SPLIT_FILES, *counts]}
    with tqdm(total=sum(counts.values()), desc="synthetic images", unit="img") as bar:
        for split, n in counts.items():
            for i in range(n):
                image = f"images/{split}_{i:06d}.png"
                scene, fields = make(split, i, rng)
                record: dict = {"id": f"{split}-{i:06d}"}
                if scene is not None:
                    record["image"] = image
                    render_scene(scene, image_size).save(root / image)
                splits[split].append(record | fields)
                bar.update()
    for split, records in splits.items():
        write_json_atomic(root / SPLIT_FILES.get(split, f"{split}.json"), records, indent=None)
    # The manifest goes last: its presence means the folder is complete.
    write_json_atomic(manifest, {"params": params, "hash": stable_hash(params)})
    return root


def corpus(seed: int = 0, n_scenes: int = 3000) -> list[str]:
    """Texts covering every question, answer and caption the world can produce.

    Used to train the tiny zoo's tokenizer, independently of any data config.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(n_scenes):
        scene = sample_scene(rng)
        texts.append(caption(scene))
        for writer in QUESTION_WRITERS.values():
            qa = writer(scene, rng)
            if qa is not None:
                texts.append(f"{qa.question}\n{qa.answer}")  # as the chat template puts it
    texts += [f"{c} {s}" for c in COLOURS for s in SHAPES]
    return texts
