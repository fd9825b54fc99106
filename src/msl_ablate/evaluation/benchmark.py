"""Evaluate a model on one benchmark: question file -> greedy answers -> official score.

Every benchmark goes through ``evaluate_benchmark``, the held-out split of the training data
included. The question file is one of two LLaVA layouts (``BenchmarkSpec.format``):

* ``questions``: JSON lines ``{"question_id", "image", "text"}`` as LLaVA's eval scripts read
  them (``image`` is optional: text-only questions). The prompt is ``<image>\\n`` + ``text`` +
  ``\\n`` + the spec's ``prompt_suffix`` (not added when ``text`` ends with it, as LLaVA's files
  do). Where the ids name an image and repeat (``repeated_ids``: LLaVA's MME and TextVQA files),
  each question is asked and answered on its own and the answers keep the file's ids.
* ``conversations``: a training-style JSON list of records; the prompt is the conversation up
  to its last answer (the answer is what ``exact_match`` scores against).

Answers are written as LLaVA answer files (``{"question_id", "prompt", "text"}`` per line; the
prompt as LLaVA's scripts write it: the question without ``<image>`` for ``questions``, the
last human turn for ``conversations``) and
scored by the benchmark's scorer from ``SCORERS``; a question without an answer is counted by
the scorer (``n_missing``), never dropped.
"""

from __future__ import annotations

import base64
import binascii
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msl_ablate.config.enums import QuestionFormat
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.data.records import load_records
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.evaluation.generate import generate_answers
from msl_ablate.evaluation.headline import HEADLINE_METRICS
from msl_ablate.evaluation.oracle import frequent_answers, guess_pools
from msl_ablate.evaluation.scoring.benchmarks import EXPORTS, score, score_with_units
from msl_ablate.evaluation.scoring.files import (
    as_question_id,
    iter_jsonl,
    require,
    write_json,
    write_jsonl,
)
from msl_ablate.evaluation.scoring.metrics import UNITS_FILE
from msl_ablate.evaluation.scoring.mmbench import (
    GROUP_MODULUS,
    present_options,
    read_mmbench_rows,
)
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.utils.errors import DataError
from msl_ablate.utils.files import atomic_path
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

ANSWERS_FILE = "answers.jsonl"
BASELINE_ANSWERS_FILE = "majority_answers.jsonl"  # the blind baseline's scratch answer file
CHANCE_ANSWERS_FILE = "chance_answers.jsonl"  # the chance baseline's scratch answer file
# Uniform guesses averaged for the chance baseline: enough that the mean moves < 1 point
# between seeds on a 48-question mini benchmark; scoring is milliseconds per draw.
CHANCE_DRAWS = 64
METRICS_FILE = "metrics.json"
SUBSET_FILE = "questions.json"  # the records asked when max_questions cuts a conversation file


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark's files are and how to prompt and score it.

    Attributes:
        name: The benchmark's name (metric prefix, answer folder).
        scorer: Key of ``SCORERS``, or None for a benchmark without a local metric.
        questions: The question file, laid out as ``format`` says.
        image_dir: Folder that the questions' ``image`` paths are relative to.
        annotations: Official annotations for the scorer (file or folder).
        prompt_suffix: Instruction appended on its own line, e.g. "Answer the question using
            a single word or phrase."
        max_new_tokens: Longest answer.
        options: Scorer keyword options (``split`` for ``pope`` and ``sqa_img``).
        export: Also write the answers in an external grader's format (a key of ``EXPORTS``).
        format: The question file's layout.
        repeated_ids: The question ids name an image and repeat (``questions`` only).
        max_questions: Ask only the first ones (``conversations`` only; the scorer then reads
            the records asked, written to ``SUBSET_FILE``, when it reads the question file).
    """

    name: str
    scorer: str | None
    questions: Path
    image_dir: Path
    annotations: Path | None = None
    prompt_suffix: str = ""
    max_new_tokens: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    export: str | None = None
    format: QuestionFormat = QuestionFormat.questions
    repeated_ids: bool = False
    max_questions: int | None = None


def read_questions(path: Path, image_dir: Path, repeated_ids: bool = False) -> list[dict[str, Any]]:
    """Read a LLaVA question file strictly, checking that every image exists.

    Args:
        path: JSON lines with ``question_id`` and ``text`` (and usually ``image``).
        image_dir: Folder of the images.
        repeated_ids: An id may name several questions (about one image).

    Returns:
        The question lines, in file order.

    Raises:
        FileNotFoundError: No such question file.
        DataError: A malformed line, a repeated id or a missing image (file, line and id named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"question file not found: {path}")
    questions, seen = [], {}
    try:
        for lineno, obj in iter_jsonl(path):
            where = f"{path}:{lineno}"
            qid = as_question_id(require(obj, "question_id", where), where)
            text = require(obj, "text", f"{where}: question_id {qid!r}")
            if not isinstance(text, str):
                raise DataError(f"{where}: question_id {qid!r}: 'text' must be a string")
            if qid in seen and not repeated_ids:
                raise DataError(f"{where}: duplicate question_id {qid!r} (line {seen[qid]})")
            image = obj.get("image")
            if image is not None and not (image_dir / image).is_file():
                raise DataError(
                    f"{where}: question_id {qid!r}: image not found: {image_dir / image}"
                )
            seen[qid] = lineno
            questions.append(obj)
    except ValueError as err:  # the scoring package's readers raise ValueError
        raise DataError(str(err)) from None
    return questions


def with_suffix(text: str, suffix: str) -> str:
    """``text`` with the instruction on a line of its own, unless it ends with it already
    (LLaVA's question files carry it in their ``text``)."""
    if not suffix or text.rstrip().endswith(suffix.strip()):
        return text
    return f"{text}\n{suffix}"


def prompt_text(question: dict[str, Any], suffix: str) -> str:
    """The user turn: the image placeholder, the question text and the instruction."""
    text = with_suffix(question["text"], suffix)
    return f"{IMAGE_TOKEN}\n{text}" if question.get("image") is not None else text


def _with_suffix(turns: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """The conversation up to its last answer, the suffix added to the last human turn."""
    if turns and turns[-1].get("from") != "human":
        turns = turns[:-1]
    if turns:
        turns = [*turns[:-1], {**turns[-1], "value": with_suffix(turns[-1]["value"], suffix)}]
    return turns


def _decoded_image(where: str, row: dict[str, str], image_out: Path | None) -> Path | None:
    """A TSV row's base64 image written to ``image_out/<index>.jpg`` (None: no image, or not
    decoded)."""
    if not row.get("image") or image_out is None:
        return None
    image = image_out / f"{row['index']}.jpg"  # PIL reads it by its content, whatever it is
    if not image.is_file():  # written whole or not at all: a later run reuses it
        try:
            data = base64.b64decode(row["image"], validate=True)
        except binascii.Error as err:
            raise DataError(
                f"{where}: index {row['index']}: 'image' is not base64 ({err})"
            ) from None
        with atomic_path(image) as tmp:
            tmp.write_bytes(data)
    return image


def mmbench_prompts(spec: BenchmarkSpec, image_out: Path | None) -> list[dict[str, Any]]:
    """MMBench's TSV rows as prompts, built as LLaVA's ``model_vqa_mmbench.py`` builds them:
    the hint (if any) and the question, then one ``<letter>. <option>`` line per option, then
    the suffix; each row's base64 image decoded into ``image_out`` (None: not decoded, for
    counting). A TSV without circular copies (every index below ``GROUP_MODULUS``) is asked
    every rotation too, as ``--all-rounds`` asks it: copy ``k`` (id ``index + k * GROUP_MODULUS``)
    shows the options rotated ``k`` times, the scorer's copy ``k``, and shares the row's image."""
    rows = read_mmbench_rows(spec.questions)
    rotate = all(int(row["index"]) < GROUP_MODULUS for _, row in rows)
    prompts = []
    for where, row in rows:
        hint = (row.get("hint") or "").strip()
        head = row["question"] if hint in ("", "nan", "none") else f"{hint}\n{row['question']}"
        options = present_options(row)
        texts = list(options.values())
        image = _decoded_image(where, row, image_out)  # once: the copies share it
        for k in range(len(texts) if rotate else 1):
            shown = zip(options, texts[k:] + texts[:k], strict=True)  # letter i: option i + k
            text = head + "".join(f"\n{c}. {v}" for c, v in shown)
            qid = int(row["index"]) + k * GROUP_MODULUS
            question = {"question_id": qid, "text": text, "image": image}
            prompts.append({"id": str(qid) if k else row["index"], "question_id": qid,
                            "image": image, "prompt": with_suffix(text, spec.prompt_suffix),
                            "conversations": [{"from": "human",
                                               "value": prompt_text(question, spec.prompt_suffix)}]})  # fmt: skip
    return prompts


def prompt_records(
    spec: BenchmarkSpec, image_out: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The benchmark's prompts as LLaVA records (``id``, ``image``, ``conversations``).

    Args:
        spec: The benchmark.
        image_out: Where ``mmbench_tsv`` questions' images are decoded to (None: not decoded).

    Returns:
        The prompt records, and the records of the question file they were made from (the
        ``conversations`` layout; empty for ``questions``).

    Raises:
        FileNotFoundError, DataError: Missing or malformed question files (file, line or
            record named).
    """
    if spec.format is QuestionFormat.mmbench_tsv:
        try:
            return mmbench_prompts(spec, image_out), []
        except ValueError as err:
            raise DataError(str(err)) from None
    if spec.format is QuestionFormat.questions:
        prompts, seen = [], Counter()
        for q in read_questions(spec.questions, spec.image_dir, spec.repeated_ids):
            qid = str(q["question_id"])
            seen[qid] += 1  # a repeated id's k-th question is asked as "<id>#<k>"
            prompts.append({
                "id": qid if seen[qid] == 1 else f"{qid}#{seen[qid]}",
                "question_id": q["question_id"],
                "image": q.get("image"),
                "prompt": with_suffix(q["text"], spec.prompt_suffix),
                "conversations": [{"from": "human", "value": prompt_text(q, spec.prompt_suffix)}],
            })  # fmt: skip
        return prompts, []
    asked = load_records(spec.questions, spec.image_dir)[: spec.max_questions]
    prompts = [
        {
            **r,
            "question_id": r["id"],
            "conversations": _with_suffix(r["conversations"], spec.prompt_suffix),
        }
        for r in asked
    ]
    return prompts, asked


def _annotations(spec: BenchmarkSpec, out_dir: Path, asked: list[dict[str, Any]]) -> Path | None:
    """What the scorer reads: the records asked, when only some of the question file were."""
    if spec.max_questions is None or spec.annotations != spec.questions:
        return spec.annotations
    return write_json(out_dir / SUBSET_FILE, asked)


# A benchmark's baselines depend on its files and the questions asked, never on the model: a
# process that evaluates many models (a sweep's worker) scores them once per benchmark. Keyed
# by what they depend on: (name, scorer, options, the files' states, max_questions).
_BASELINES: dict[tuple, dict[str, float]] = {}


def _file_states(path: Path | None) -> tuple:
    """(name, size, modification time) of a file or of every file of a folder."""
    if path is None:
        return ()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def answer_line(record: dict[str, Any], text: str) -> dict[str, Any]:
    """A line of a LLaVA answer file: the question's id, its prompt as LLaVA writes it, the text."""
    prompt = record.get("prompt", record["conversations"][-1]["value"])
    return {"question_id": record["question_id"], "prompt": prompt, "text": text}


def baselines(
    spec: BenchmarkSpec, asked: list[dict[str, Any]], records: list[dict[str, Any]]
) -> dict[str, float]:
    """The majority and chance baselines of a benchmark's questions (scored once per process).

    Their answer files are scratch files in a temporary folder: the scorers read files.
    """
    key = (spec.name, spec.scorer, repr(sorted(spec.options.items())),
           _file_states(spec.annotations), _file_states(spec.questions), spec.max_questions)  # fmt: skip
    if key not in _BASELINES:
        with tempfile.TemporaryDirectory(prefix="msl-ablate-baselines-") as scratch:
            annotations = _annotations(spec, Path(scratch), asked)
            _BASELINES[key] = _majority_baseline(spec, annotations, records, Path(scratch)) | (
                _chance_baseline(spec, annotations, records, Path(scratch))
            )
    return dict(_BASELINES[key])


def _majority_baseline(
    spec: BenchmarkSpec, annotations: Path, records: list[dict[str, Any]], out_dir: Path
) -> dict[str, float]:
    """The headline metric of a blind guess (``majority_baseline/<metric>``): every question
    answered with one frequent right answer, the best of the three most frequent (a balanced
    yes/no benchmark ties, and POPE's F1 is 66.7 for "yes" but 0 for "no")."""
    metric = HEADLINE_METRICS[spec.scorer][0]
    best = float("-inf")
    for answer in frequent_answers(spec.scorer, annotations):
        lines = [answer_line(r, answer) for r in records]
        path = write_jsonl(out_dir / BASELINE_ANSWERS_FILE, lines)
        best = max(best, float(score(spec.scorer, annotations, path, **spec.options)[metric]))
    return {f"majority_baseline/{metric}": best}


def _chance_baseline(
    spec: BenchmarkSpec, annotations: Path, records: list[dict[str, Any]], out_dir: Path
) -> dict[str, float]:
    """The headline metric of uniform guessing (``chance_baseline/<metric>``): each question
    answered with a random draw from its options' letters (multiple choice) or from the
    benchmark's distinct right answers, averaged over ``CHANCE_DRAWS`` seeded draws (F1 and
    circular accuracy are not linear in the answers, so this is sampled, not computed)."""
    metric = HEADLINE_METRICS[spec.scorer][0]
    pools = guess_pools(spec.scorer, annotations)
    every = sorted({a for pool in pools.values() for a in pool})
    rng = random.Random(f"chance/{spec.name}")
    total = 0.0
    for _ in range(CHANCE_DRAWS):
        lines = [
            answer_line(r, rng.choice(pools.get(str(r["question_id"]), every))) for r in records
        ]
        path = write_jsonl(out_dir / CHANCE_ANSWERS_FILE, lines)
        total += float(score(spec.scorer, annotations, path, **spec.options)[metric])
    return {f"chance_baseline/{metric}": total / CHANCE_DRAWS}


def evaluate_benchmark(
    vlm: VisionLanguageModel,
    spec: BenchmarkSpec,
    out_dir: Path,
    prefix: str,
    batch_size: int,
    max_length: int,
) -> dict[str, float]:
    """Answer every question greedily, write the answer file and score it.

    Args:
        vlm: The model.
        spec: The benchmark.
        out_dir: Folder for ``answers.jsonl``, ``metrics.json`` and any export.
        prefix: Metric name prefix, ``<stage>/<benchmark>``.
        batch_size: Prompts per batch.
        max_length: Longest prompt in tokens (image tokens included).

    Returns:
        ``{f"{prefix}/{metric}": value}`` (empty for a benchmark without a scorer).

    Raises:
        FileNotFoundError, DataError: Missing or malformed benchmark files.
    """
    start = time.perf_counter()
    records, asked = prompt_records(spec, out_dir / "images")
    dataset = LlavaDataset(
        records,
        spec.image_dir,
        vlm.lm.tokenizer,
        vlm.vision.image_transform,
        vlm.num_image_tokens,
        max_length,
        for_generation=True,
    )
    answers = generate_answers(vlm, dataset, batch_size, spec.max_new_tokens, desc=spec.name)
    lines = [answer_line(r, answers[r["id"]]) for r in records if r["id"] in answers]
    if len(lines) < len(records):  # the scorer counts them as wrong (n_missing)
        log.warning(
            "Benchmark %s: %d of %d questions got no answer",
            spec.name,
            len(records) - len(lines),
            len(records),
        )
    answers_path = write_jsonl(out_dir / ANSWERS_FILE, lines)
    if spec.export is not None:
        name, content = EXPORTS[spec.export]
        write_json(out_dir / name, content(lines), indent=2)
    metrics: dict[str, float] = {}
    if spec.scorer is not None:
        annotations = _annotations(spec, out_dir, asked)
        try:
            raw, units = score_with_units(spec.scorer, annotations, answers_path, **spec.options)
        except ValueError as err:
            raise DataError(f"benchmark {spec.name!r}: {err}") from err
        if spec.scorer != "exact_match":  # held-out exact match brings its own baseline
            raw |= baselines(spec, asked, records)
        metrics = {f"{prefix}/{k}": float(v) for k, v in sorted(raw.items())}
        write_json(out_dir / METRICS_FILE, raw, indent=2)
        write_jsonl(out_dir / UNITS_FILE, units)  # what a report's paired bootstrap resamples
    log.info(
        "Benchmark %s: %d questions in %.1f s -> %s",
        spec.name,
        len(records),
        time.perf_counter() - start,
        out_dir,
    )
    return metrics
