"""VQAv2 scorer (official annotation JSON, VQA accuracy).

Annotation file (e.g. ``v2_mscoco_val2014_annotations.json``)::

    {"annotations": [{"question_id": 1, "image_id": 9, "answer_type": "number",
                      "question_type": "how many", "multiple_choice_answer": "2",
                      "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": 1},
                                  ... 10 in all]}, ...], ...}

Predictions: LLaVA answer file keyed by ``question_id``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import as_question_id, load_json, require, write_json
from msl_ablate.evaluation.scoring.metrics import Unit, mean_metrics
from msl_ablate.evaluation.scoring.predictions import load_predictions
from msl_ablate.evaluation.scoring.vqa_accuracy import (
    NUM_ANNOTATORS,
    VQAQuestion,
    vqa_units,
)


def read_vqav2_annotations(path: Path | str) -> list[VQAQuestion]:
    """Read the official VQAv2 annotation JSON.

    Args:
        path: Annotation file with a top-level ``annotations`` list.

    Returns:
        The questions, in file order.

    Raises:
        ValueError: If the structure is not the official one (message names file and record),
            a question has other than 10 answers, or a question id repeats.
    """
    path = Path(path)
    data = load_json(path)
    records = require(data, "annotations", f"{path}: top level")
    if not isinstance(records, list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    questions: list[VQAQuestion] = []
    seen: set[str] = set()
    for index, rec in enumerate(records):
        where = f"{path}: annotations[{index}]"
        qid = as_question_id(require(rec, "question_id", where), where)
        where = f"{where} (question_id {qid!r})"
        raw = require(rec, "answers", where)
        if not isinstance(raw, list) or len(raw) != NUM_ANNOTATORS:
            raise ValueError(f"{where}: 'answers' must be a list of {NUM_ANNOTATORS} objects")
        answers = []
        for ans in raw:
            text = require(ans, "answer", f"{where}: answers[]")
            if not isinstance(text, str):
                raise ValueError(f"{where}: every answers[].answer must be a string")
            answers.append(text)
        if qid in seen:
            raise ValueError(f"{where}: duplicate question_id {qid!r}")
        seen.add(qid)
        answer_type = rec.get("answer_type")
        questions.append(
            VQAQuestion(qid, tuple(answers), None if answer_type is None else str(answer_type))
        )
    return questions


def score_vqav2(annotations: Path | str, predictions: Path | str) -> dict[str, float | int]:
    """Score a VQAv2 answer file.

    Args:
        annotations: Official annotation JSON.
        predictions: LLaVA answer file (``question_id`` as in the annotations).

    Returns:
        ``accuracy`` and ``accuracy/<answer_type>`` (percent), ``n_questions``,
        ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: On malformed files or a prediction for an unknown question.
    """
    return mean_metrics(vqav2_units(annotations, predictions))


def vqav2_units(annotations: Path | str, predictions: Path | str) -> list[Unit]:
    """One unit per question (``vqa_units``): what the paired bootstrap resamples."""
    return vqa_units(read_vqav2_annotations(annotations), load_predictions(predictions))


def write_vqav2(
    path: Path | str,
    records: Iterable[Mapping[str, Any]],
    *,
    questions_path: Path | str | None = None,
) -> Path:
    """Write records in the official VQAv2 annotation (and optionally questions) format.

    Args:
        path: Destination annotation JSON.
        records: Mappings with ``question_id`` and ``answers`` (10 strings), optionally
            ``answer_type``, ``question_type``, ``image_id`` and ``question``.
        questions_path: If given, also write the official questions JSON there.

    Returns:
        The annotation path.

    Raises:
        ValueError: If a record lacks a required key or has other than 10 answers.
    """
    annotations, questions = [], []
    for index, rec in enumerate(records):
        where = f"record {index}"
        answers = list(require(rec, "answers", where))
        if len(answers) != NUM_ANNOTATORS:
            raise ValueError(f"{where}: expected {NUM_ANNOTATORS} answers, got {len(answers)}")
        qid = require(rec, "question_id", where)
        image_id = rec.get("image_id", index)
        annotations.append(
            {
                "question_id": qid,
                "image_id": image_id,
                "question_type": rec.get("question_type", "what"),
                "answer_type": rec.get("answer_type", "other"),
                "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, a in enumerate(answers)
                ],
            }
        )
        questions.append(
            {"question_id": qid, "image_id": image_id, "question": rec.get("question", "")}
        )
    info = {"description": "VQAv2-format annotations", "version": "2.0"}
    if questions_path is not None:
        write_json(
            questions_path,
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "questions": questions,
            },
        )
    return write_json(path, {"info": info, "data_subtype": "val2014", "annotations": annotations})
