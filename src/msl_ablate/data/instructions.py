"""The instruction mix: stage-2 records that teach what the benchmarks ask, as LLaVA-1.5's does.

LLaVA-1.5 finetunes on the training splits of VQAv2, GQA, OCR-VQA/TextCaps, A-OKVQA (option
letters) and more, each with its answer-format instruction, plus multi-turn conversations and
text-only chat. This mix draws the same kinds of record from the scene world, with the question
writers the benchmark suite uses (``data/benchmark_questions.py``), on scenes of its own random
stream (seeded by an int; the suite's streams are seeded by strings, so none is shared):

* ``vqa`` (VQAv2), ``gqa`` (relations), ``ocr`` (TextVQA), ``pope`` (object existence, negatives
  absent at random or adversarial: same colour or same shape as a present object): the short-
  answer suffix, one word answers;
* ``mme``: "Please answer yes or no." questions, answered ``yes``/``no`` in lower case as every
  other yes/no of the mix (VQAv2's answers are lower case): with MME's ``Yes``/``No`` the tiny LM
  learns two answer pairs for one skill, and the grounding of either comes later (docs/zoo.md);
* ``sqa`` (ScienceQA: a context, 2-4 options) and ``mmbench`` (4 options): option letters;
* ``caption``: a full description (LLaVA's detailed captions, MM-Vet's open answers);
* some records hold two or three of these about one image (multi-turn), and some have no image
  (``TEXT_ONLY_WRITERS``): ScienceQA's text-only questions, and the two text skills the
  benchmarks' formats rest on, without a scene to see: picking the option that matches a value
  (option letters) and saying whether a value is in a list (yes/no). Measured on the tiny LM
  alone (text, answer-only loss): it stayed at chance on option letters and object yes/no from
  the benchmark records (1500 steps), and picked the matching option 47 times in 100 (chance
  ~27) after 600 steps with these records; as a share of the mix, more is not better
  (docs/architecture.md).

Stage splits (``stage_splits``) are further splits of single-turn records of chosen tasks, for a
stage of their own before the finetune (a curriculum, as the demo's ``read`` stage): their words
are legible at the images' size, so every record can be answered from its image. A ``circular``
split asks each option-letter question under every rotation of its options (MMBench's circular
evaluation as a training record).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from msl_ablate.data.benchmark_questions import (
    GQA_WRITERS,
    MME_SUFFIX,
    MME_WRITERS,
    Choice,
    ask_word_at,
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
from msl_ablate.data.facts import CATEGORIES, draw, other_values, present
from msl_ablate.data.synthetic import (
    CHOICE_SUFFIX,
    QUESTION_WRITERS,
    SHORT_ANSWER_PROMPT,
    SPLIT_FILES,
    ask_word,
    caption,
    write_dataset,
)
from msl_ablate.data.synthetic import corpus as base_corpus
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.data.world import (
    CELLS,
    COLOURS,
    SHAPES,
    WORDS,
    WORLD_VERSION,
    Scene,
    legible,
    sample_scene,
)

# Bump when the mix's output changes for the same arguments: cached datasets are rebuilt.
# 3: MME's and the text-only yes/no answers in lower case.
MIX_VERSION = 3
# One turn: (question as the user writes it, answer).
Turn = tuple[str, str]
Task = Callable[[Scene, random.Random], Turn | None]
T = TypeVar("T")


def _short(question: str) -> str:
    return f"{question}\n{SHORT_ANSWER_PROMPT}"


def _letters(rng: random.Random, choice: Choice | None, with_context: bool) -> Turn | None:
    """A multiple-choice turn: shuffled options, the letter of the right one."""
    turns = _circular(rng, choice, with_context, rotations=1)
    return None if turns is None else turns[0]


def _circular(
    rng: random.Random, choice: Choice | None, with_context: bool, rotations: int
) -> list[Turn] | None:
    """The multiple-choice turn under ``rotations`` rotations of its shuffled options (all of
    them at most), as MMBench's circular evaluation asks it: only the options' texts tell the
    right letter, never its place. The hint is given once, in the first turn."""
    if choice is None:
        return None
    question, right, wrong, hint = choice
    options = [right, *wrong]
    rng.shuffle(options)
    lead = f"Context: {hint}\n" if with_context else (f"{hint}\n" if hint else "")
    turns = []
    shifts = list(range(min(rotations, len(options))))
    if len(shifts) > 1:  # in random order: a turn's letter does not follow from the last one's
        rng.shuffle(shifts)
    for k in shifts:
        shown = options[k:] + options[:k]
        # The hint once, in the first turn: the records fit the LM's context.
        text = f"{'' if turns else lead}{question}\n{options_text(shown)}\n{CHOICE_SUFFIX}"
        turns.append((text, "ABCD"[shown.index(right)]))
    return turns


def task_vqa(scene: Scene, rng: random.Random) -> Turn | None:
    qa = QUESTION_WRITERS[rng.choice(("colour", "shape", "count", "exists"))](scene, rng)
    return None if qa is None else (_short(qa.question), qa.answer)


def task_gqa(scene: Scene, rng: random.Random) -> Turn | None:
    out = rng.choice(GQA_WRITERS)(scene, rng)
    return None if out is None else (_short(out[0].question), out[0].answer)


def task_ocr(scene: Scene, rng: random.Random) -> Turn | None:
    qa = (ask_word if rng.random() < 0.5 else ask_word_at)(scene, rng)
    return None if qa is None else (_short(qa.question), qa.answer)


def task_pope(scene: Scene, rng: random.Random) -> Turn | None:
    have = sorted(present(scene))
    if rng.random() < 0.5:
        return _short(f"Is there a {rng.choice(have)} in the image?"), "yes"
    absent = [c for c in CATEGORIES if c not in have]
    similar = [c for c in absent if any(set(c.split()) & set(h.split()) for h in have)]
    # Half of the negatives adversarial (POPE's hardest split), the rest at random.
    pool = similar if similar and rng.random() < 0.5 else absent
    return _short(f"Is there a {rng.choice(pool)} in the image?"), "no"


def task_mme(scene: Scene, rng: random.Random) -> Turn | None:
    pair = MME_WRITERS[rng.choice(sorted(MME_WRITERS))](scene, rng)
    if pair is None:
        return None
    yes = rng.random() < 0.5
    return _short(pair[0 if yes else 1] + MME_SUFFIX), "yes" if yes else "no"


# The option-letter tasks: their question writers, and whether the hint is a "Context:".
CHOICE_TASKS: dict[
    str, tuple[tuple[Callable[[Scene, random.Random], Choice | None], ...], bool]
] = {
    "sqa": ((sqa_colour, sqa_count, sqa_position, sqa_word), True),
    "mmbench": ((mmb_colour, mmb_position, mmb_relation, mmb_word), False),
}


def circular_turns(task: str, scene: Scene, rng: random.Random) -> list[Turn] | None:
    """An option-letter question of ``task`` under every rotation of its options."""
    writers, with_context = CHOICE_TASKS[task]
    return _circular(rng, rng.choice(writers)(scene, rng), with_context, rotations=4)


def task_sqa(scene: Scene, rng: random.Random) -> Turn | None:
    writers, with_context = CHOICE_TASKS["sqa"]
    return _letters(rng, rng.choice(writers)(scene, rng), with_context)


def task_mmbench(scene: Scene, rng: random.Random) -> Turn | None:
    writers, with_context = CHOICE_TASKS["mmbench"]
    return _letters(rng, rng.choice(writers)(scene, rng), with_context)


def task_caption(scene: Scene, rng: random.Random) -> Turn | None:
    return rng.choice(("Describe the image.", "What is in this image?")), caption(scene)


# The values a text-only skill record picks from (a kind of value, its pool).
VALUE_POOLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("colour", tuple(COLOURS)), ("shape", SHAPES), ("word", WORDS), ("position", CELLS),
)  # fmt: skip


def text_match(rng: random.Random) -> Turn:
    """Option letters without an image: which option is a given value (MMBench's format)."""
    _, pool = rng.choice(VALUE_POOLS)
    right = rng.choice(pool)
    wrong = other_values(rng, right, pool, min(3, len(pool) - 1))
    turn = _letters(rng, (f'Which option is "{right}"?', right, wrong, ""), with_context=False)
    assert turn is not None  # a choice was given
    return turn


def text_listed(rng: random.Random) -> Turn:
    """Yes/no without an image: is a value among those listed (POPE's and MME's matching)."""
    kind, pool = rng.choice(VALUE_POOLS)
    listed = rng.sample(pool, rng.randint(1, len(pool) - 1))
    asked = (
        rng.choice(listed)
        if rng.random() < 0.5
        else rng.choice([v for v in pool if v not in listed])
    )
    question = f"The {kind}s are: {', '.join(listed)}. Is {asked} one of them?{MME_SUFFIX}"
    return question, "yes" if asked in listed else "no"


def text_sqa(rng: random.Random) -> Turn:
    """A ScienceQA-like question without an image (a context, then option letters)."""
    turn = _letters(rng, sqa_text_only(rng), with_context=True)
    assert turn is not None
    return turn


# Writers of the records without an image, drawn in turn (``text_only_prob``).
TEXT_ONLY_WRITERS: dict[str, Callable[[random.Random], Turn]] = {
    "sqa": text_sqa, "match": text_match, "listed": text_listed,
}  # fmt: skip


TASKS: dict[str, Task] = {
    "vqa": task_vqa,
    "gqa": task_gqa,
    "ocr": task_ocr,
    "pope": task_pope,
    "mme": task_mme,
    "sqa": task_sqa,
    "mmbench": task_mmbench,
    "caption": task_caption,
}
SHORT_TASKS = ("vqa", "gqa", "ocr", "pope")  # one-word answers: a multi-turn record's follow-ups


def _conversation(turns: list[Turn], with_image: bool) -> list[dict[str, str]]:
    messages = []
    for k, (question, answer) in enumerate(turns):
        text = f"{IMAGE_TOKEN}\n{question}" if k == 0 and with_image else question
        messages += [{"from": "human", "value": text}, {"from": "gpt", "value": answer}]
    return messages


def generate_instruction_mix(
    root: str | Path,
    seed: int = 0,
    image_size: int = 64,
    n_captions: int = 2000,
    n_instruct: int = 8000,
    n_eval: int = 320,
    tasks: dict[str, float] | None = None,
    multi_turn_prob: float = 0.15,
    text_only_prob: float = 0.03,
    max_objects: int = 4,
    stage_splits: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the instruction mix under ``root`` unless an identical one is there.

    Args:
        root: Output folder (``captions.json``, ``instruct.json``, ``eval.json``, images).
        seed: Seed of the only random generator used.
        image_size: Side of the square PNG images.
        n_captions: Stage-1 caption records.
        n_instruct: Stage-2 records, tasks drawn by weight.
        n_eval: Held-out single-turn records, the short-answer tasks in equal shares
            (``question_type`` = task).
        tasks: Task name -> weight in ``instruct`` (default: every task, weight 1).
        multi_turn_prob: Probability that an instruct record asks one or two more short
            questions (``SHORT_TASKS``) about the same image.
        text_only_prob: Probability that an instruct record has no image (``TEXT_ONLY_WRITERS``).
        max_objects: Largest number of shapes per scene.
        stage_splits: Split name -> ``{n: records, tasks: {task: weight}}``: single-turn records
            of those tasks, on scenes whose word is legible at ``image_size``, written to
            ``<name>.json`` (for a stage of their own, e.g. the demo's ``read``).

    Returns:
        The root folder.

    Raises:
        ValueError: An unknown task, a weight below zero, or a stage split that is malformed or
            named like a split of the mix.
    """
    weights = dict(tasks) if tasks is not None else dict.fromkeys(TASKS, 1.0)
    unknown = sorted(set(weights) - set(TASKS))
    if unknown or any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ValueError(
            f"data.generator.tasks: unknown {unknown} or no positive weight in {weights}; "
            f"tasks: {sorted(TASKS)}"
        )
    names = sorted(weights)
    staged = _stage_splits(stage_splits or {})
    # Held-out records ask for short answers (exact match); captions are graded elsewhere.
    active = [t for t in names if weights[t] > 0]
    eval_tasks = [t for t in active if t != "caption"] or active
    params = {
        "seed": seed, "image_size": image_size, "n_captions": n_captions,
        "n_instruct": n_instruct, "n_eval": n_eval, "tasks": {t: weights[t] for t in names},
        "multi_turn_prob": multi_turn_prob, "text_only_prob": text_only_prob,
        "max_objects": max_objects, "version": MIX_VERSION, "world": WORLD_VERSION,
    }  # fmt: skip
    if staged:  # only when set, so that the manifests of mixes without them stay valid
        # ``circular`` only when set, so that the data keys of splits without it stay as they were
        params["stage_splits"] = {
            k: {"n": v.n, "tasks": v.tasks} | ({"circular": True} if v.circular else {})
            for k, v in staged.items()
        }

    def make(split: str, i: int, rng: random.Random) -> tuple[Scene | None, dict[str, Any]]:
        if split == "captions":
            scene = sample_scene(rng, max_objects=max_objects)
            return scene, {"conversations": _conversation([task_caption(scene, rng)], True)}
        if split == "instruct" and rng.random() < text_only_prob:
            kind = rng.choice(sorted(TEXT_ONLY_WRITERS))
            turn = TEXT_ONLY_WRITERS[kind](rng)
            record = {"conversations": _conversation([turn], False), "question_type": "text"}
            return None, record | {"text_skill": kind}
        if split == "eval":
            task = eval_tasks[i % len(eval_tasks)]
        else:
            task = _pick(rng, staged[split].tasks if split in staged else weights)
        if split in staged:
            write = _stage_writer(task, staged[split].circular)
            scene, turns = draw(rng, _legible_only(write, image_size), max_objects)
        else:
            scene, turn = draw(rng, TASKS[task], max_objects)
            turns = [turn]
        if split == "instruct" and rng.random() < multi_turn_prob:
            # Follow-ups are short questions (VQAv2/GQA-like), as most of LLaVA's turns are.
            short = [t for t in active if t in SHORT_TASKS]
            for extra in rng.sample(short, min(rng.randint(1, 2), len(short))):
                more = TASKS[extra](scene, rng)
                if more is not None and more[0] != turns[0][0]:
                    turns.append(more)
        record = {"conversations": _conversation(turns, True), "question_type": task}
        return scene, record | {"answer": turns[-1][1]}

    counts = {"captions": n_captions, "instruct": n_instruct, "eval": n_eval}
    counts |= {name: split.n for name, split in staged.items()}
    return write_dataset(root, params, counts, make, seed, image_size)


class StageSplit(NamedTuple):
    """A checked ``data.generator.stage_splits`` entry."""

    n: int
    tasks: dict[str, float]
    circular: bool


def _stage_writer(task: str, circular: bool) -> Callable[[Scene, random.Random], list[Turn] | None]:
    """The turns of one stage-split record: the task's turn, or with ``circular`` an
    option-letter task's question under each rotation of its options."""
    if circular and task in CHOICE_TASKS:
        return lambda scene, rng: circular_turns(task, scene, rng)

    def one(scene: Scene, rng: random.Random) -> list[Turn] | None:
        turn = TASKS[task](scene, rng)
        return None if turn is None else [turn]

    return one


def _legible_only(
    write: Callable[[Scene, random.Random], T | None], image_size: int
) -> Callable[[Scene, random.Random], T | None]:
    """``write`` on scenes whose word is legible at ``image_size`` (None on the others, redrawn)."""
    return lambda scene, rng: write(scene, rng) if legible(scene, image_size) else None


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    """A task drawn by weight (names sorted, so the draw is independent of dict order)."""
    names = sorted(weights)
    return rng.choices(names, weights=[weights[t] for t in names])[0]


def _stage_splits(stage_splits: dict[str, dict[str, Any]]) -> dict[str, StageSplit]:
    """``stage_splits`` checked."""
    out = {}
    for name, spec in stage_splits.items():
        where = f"data.generator.stage_splits.{name}"
        if name in SPLIT_FILES:
            raise ValueError(f"{where}: {name!r} is a split of the mix; pick another name")
        spec = dict(spec)
        tasks = dict(spec.get("tasks") or {})
        unknown = sorted(set(tasks) - set(TASKS))
        bad_n = not isinstance(spec.get("n"), int) or spec["n"] < 1
        circular = spec.get("circular", False)
        if (
            set(spec) - {"n", "tasks", "circular"}
            or bad_n
            or unknown
            or not any(tasks.values())
            or not isinstance(circular, bool)
        ):
            raise ValueError(
                f"{where}: expected {{n: records >= 1, tasks: {{task: weight}}, circular: "
                f"false|true}} with tasks from {sorted(TASKS)} and a positive weight, got {spec}"
            )
        if any(w < 0 for w in tasks.values()):
            raise ValueError(f"{where}.tasks: weights must be >= 0, got {tasks}")
        weights = {t: float(w) for t, w in sorted(tasks.items()) if w > 0}
        out[name] = StageSplit(spec["n"], weights, circular)
    return out


def corpus(seed: int = 0, n_scenes: int = 3000) -> list[str]:
    """Texts covering every caption, question and answer of the world and of this mix.

    The zoo's tokenizer is trained on it, so that the instructions' words (the benchmarks'
    suffixes, option lists, relations) are whole tokens, independently of any data config.
    """
    rng = random.Random(f"corpus/{seed}")
    texts = base_corpus(seed, n_scenes)
    for _ in range(n_scenes // 3):
        scene = sample_scene(rng)
        for task in TASKS.values():
            turn = task(scene, rng)
            if turn is not None:
                texts.append(f"{turn[0]}\n{turn[1]}")  # an answer starts its line
    texts += ["\n".join(write(rng)) for write in TEXT_ONLY_WRITERS.values()]
    return texts
