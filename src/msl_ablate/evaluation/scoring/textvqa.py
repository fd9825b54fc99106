"""TextVQA scorer (official ``TextVQA_0.5.1_val.json``, VQA accuracy).

Annotation file::

    {"dataset_name": "textvqa", "dataset_type": "val",
     "data": [{"question_id": 34602, "question": "...", "image_id": "...",
               "answers": ["nokia", "nokia", ... 10 strings]}, ...]}

An ``answer_type`` key is not part of the release; if present it is reported as a breakdown.
Predictions: LLaVA answer file keyed by ``question_id``; or the answer file LLaVA's
``model_vqa_loader.py`` writes for ``llava_textvqa_val_v051_ocr.jsonl``, whose ``question_id``
is the image's id (repeated for two questions about one image): each answer is then matched to
its question by ``(image_id, question)``, the question taken from its ``prompt`` as LLaVA's
``eval_textvqa.py`` takes it (the line that is neither the OCR tokens nor the suffix).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import (
    as_question_id,
    iter_jsonl,
    load_json,
    require,
    write_json,
)
from msl_ablate.evaluation.scoring.metrics import Unit, mean_metrics
from msl_ablate.evaluation.scoring.predictions import (
    Predictions,
    iter_answers_with_prompts,
    load_predictions,
)
from msl_ablate.evaluation.scoring.vqa_accuracy import (
    NUM_ANNOTATORS,
    VQAQuestion,
    vqa_units,
)


def read_textvqa_annotations(path: Path | str) -> list[VQAQuestion]:
    """Read the official TextVQA JSON.

    Args:
        path: File with a top-level ``data`` list.

    Returns:
        The questions, in file order.

    Raises:
        ValueError: If the structure is not the official one (message names file and record),
            a question has other than 10 answers, or a question id repeats.
    """
    path = Path(path)
    data = load_json(path)
    records = require(data, "data", f"{path}: top level")
    if not isinstance(records, list):
        raise ValueError(f"{path}: 'data' must be a list")
    questions: list[VQAQuestion] = []
    seen: set[str] = set()
    for index, rec in enumerate(records):
        where = f"{path}: data[{index}]"
        qid = as_question_id(require(rec, "question_id", where), where)
        where = f"{where} (question_id {qid!r})"
        answers = require(rec, "answers", where)
        if (
            not isinstance(answers, list)
            or len(answers) != NUM_ANNOTATORS
            or not all(isinstance(a, str) for a in answers)
        ):
            raise ValueError(f"{where}: 'answers' must be a list of {NUM_ANNOTATORS} strings")
        if qid in seen:
            raise ValueError(f"{where}: duplicate question_id {qid!r}")
        seen.add(qid)
        answer_type = rec.get("answer_type")
        questions.append(
            VQAQuestion(qid, tuple(answers), None if answer_type is None else str(answer_type))
        )
    return questions


def score_textvqa(annotations: Path | str, predictions: Path | str) -> dict[str, float | int]:
    """Score a TextVQA answer file.

    Args:
        annotations: Official TextVQA JSON.
        predictions: LLaVA answer file (``question_id`` as in the annotations).

    Returns:
        ``accuracy`` (percent; ``accuracy/<answer_type>`` if the file has types),
        ``n_questions``, ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: On malformed files or a prediction for an unknown question.
    """
    return mean_metrics(textvqa_units(annotations, predictions))


def prompt_question(prompt: str) -> str:
    """The question inside a LLaVA TextVQA prompt, lowercased (LLaVA's ``prompt_processor``)."""
    if prompt.startswith("OCR tokens: "):
        found = re.search(r"Question: (.*?) Short answer:", prompt)
        return (found.group(1) if found else prompt).strip().lower()
    lines = prompt.split("\n")
    if "Reference OCR token: " in prompt and len(lines) == 3:
        return lines[1 if prompt.startswith("Reference OCR token") else 0].strip().lower()
    return lines[0].strip().lower()


def _llava_answers(path: Path, annotations: Path) -> Predictions:
    """LLaVA's answer file (ids are image ids), re-keyed by TextVQA's question ids."""
    records = require(load_json(annotations), "data", f"{annotations}: top level")
    by_key = {(str(r.get("image_id")), str(r.get("question", "")).strip().lower()):
              as_question_id(r["question_id"], str(annotations)) for r in records}  # fmt: skip
    out = Predictions(path=path)
    for lineno, where, image, text, prompt in iter_answers_with_prompts(path):
        qid = by_key.get((image, prompt_question(prompt)))
        if qid is None:
            raise ValueError(f"{where}: no question of {annotations.name} asks "
                             f"{prompt_question(prompt)!r} about image {image!r}")  # fmt: skip
        if qid in out.texts:
            raise ValueError(f"{where}: question {qid!r} answered on line {out.lines[qid]} already")
        out.texts[qid], out.lines[qid] = text, lineno
    return out


def _keyed_by_image(predictions: Path, questions: list[VQAQuestion]) -> bool:
    """Whether an answer file is LLaVA's (ids are image ids and lines carry the prompt)."""
    known = {q.question_id for q in questions}
    for _, obj in iter_jsonl(predictions):
        return "prompt" in obj and str(obj.get("question_id")) not in known
    return False


def textvqa_units(annotations: Path | str, predictions: Path | str) -> list[Unit]:
    """One unit per question (``vqa_units``): what the paired bootstrap resamples."""
    questions = read_textvqa_annotations(annotations)
    if _keyed_by_image(Path(predictions), questions):
        return vqa_units(questions, _llava_answers(Path(predictions), Path(annotations)))
    return vqa_units(questions, load_predictions(predictions))


def write_textvqa(path: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records in the official TextVQA JSON format.

    Args:
        path: Destination JSON.
        records: Mappings with ``question_id`` and ``answers`` (10 strings), optionally
            ``question``, ``image_id`` and ``answer_type``.

    Returns:
        The destination path.

    Raises:
        ValueError: If a record lacks a required key or has other than 10 answers.
    """
    data = []
    for index, rec in enumerate(records):
        where = f"record {index}"
        answers = list(require(rec, "answers", where))
        if len(answers) != NUM_ANNOTATORS:
            raise ValueError(f"{where}: expected {NUM_ANNOTATORS} answers, got {len(answers)}")
        entry: dict[str, Any] = {
            "question_id": require(rec, "question_id", where),
            "question": rec.get("question", ""),
            "image_id": rec.get("image_id", f"{index:016x}"),
            "answers": answers,
            "set_name": "val",
        }
        if rec.get("answer_type") is not None:
            entry["answer_type"] = rec["answer_type"]
        data.append(entry)
    return write_json(
        path,
        {
            "dataset_type": "val",
            "dataset_name": "textvqa",
            "dataset_version": "0.5.1",
            "data": data,
        },
    )
