"""GQA scorer (official balanced questions JSON, exact-match accuracy).

Annotation file (e.g. ``testdev_balanced_questions.json``)::

    {"20968379": {"question": "...", "imageId": "n288870", "answer": "no",
                  "fullAnswer": "No, ...", "isBalanced": true,
                  "types": {"structural": "verify", "semantic": "rel", "detailed": "relVerify"}},
     ...}

A prediction is right when it equals the answer after both are normalised with
:func:`~msl_ablate.evaluation.scoring.normalize.normalize_answer` (this subsumes LLaVA's
``rstrip('.').lower()`` preprocessing before the official exact-match script).
Predictions: LLaVA answer file keyed by the question id (the JSON key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import load_json, require, write_json
from msl_ablate.evaluation.scoring.metrics import Unit, exact_units, mean_metrics
from msl_ablate.evaluation.scoring.predictions import load_predictions


@dataclass(frozen=True)
class GQAQuestion:
    """One GQA question.

    Attributes:
        question_id: The JSON key.
        answer: Ground-truth short answer.
        structural: Structural type (``query``, ``verify``, ``logical``, ``choose``,
            ``compare``) if the file has ``types``.
    """

    question_id: str
    answer: str
    structural: str | None = None


def read_gqa_questions(path: Path | str) -> list[GQAQuestion]:
    """Read the official GQA questions JSON.

    Args:
        path: ``{question_id: {"answer": ..., "types": {...}, ...}}``.

    Returns:
        The questions, in file order.

    Raises:
        ValueError: If the structure is not the official one (message names file and id).
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by question id")
    questions = []
    for qid, rec in data.items():
        where = f"{path}: question_id {qid!r}"
        answer = require(rec, "answer", where)
        if not isinstance(answer, str):
            raise ValueError(f"{where}: 'answer' must be a string")
        types = rec.get("types") or {}
        if not isinstance(types, dict):
            raise ValueError(f"{where}: 'types' must be an object")
        structural = types.get("structural")
        questions.append(GQAQuestion(qid, answer, None if structural is None else str(structural)))
    return questions


def gqa_units(annotations: Path | str, predictions: Path | str) -> list[Unit]:
    """One unit per question: exact match after normalisation, its structural type.

    Raises:
        ValueError: On malformed files or a prediction for an unknown question.
    """
    questions = read_gqa_questions(annotations)
    preds = load_predictions(predictions)
    preds.check_known({q.question_id for q in questions})
    return exact_units(((q.question_id, q.answer, q.structural) for q in questions), preds.texts)


def score_gqa(annotations: Path | str, predictions: Path | str) -> dict[str, float | int]:
    """Score a GQA answer file.

    Args:
        annotations: Official balanced questions JSON.
        predictions: LLaVA answer file keyed by question id.

    Returns:
        ``accuracy`` and ``accuracy/<structural type>`` (percent), ``n_questions``,
        ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: On malformed files or a prediction for an unknown question.
    """
    return mean_metrics(gqa_units(annotations, predictions))


def write_gqa(path: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records in the official GQA balanced questions format.

    Args:
        path: Destination JSON.
        records: Mappings with ``question_id`` and ``answer``, optionally ``question``,
            ``image_id``, ``full_answer``, ``structural``, ``semantic`` and ``detailed``.

    Returns:
        The destination path.

    Raises:
        ValueError: If a record lacks a required key or repeats a question id.
    """
    out: dict[str, Any] = {}
    for index, rec in enumerate(records):
        where = f"record {index}"
        qid = str(require(rec, "question_id", where))
        if qid in out:
            raise ValueError(f"{where}: duplicate question_id {qid!r}")
        answer = require(rec, "answer", where)
        out[qid] = {
            "question": rec.get("question", ""),
            "imageId": rec.get("image_id", f"n{index}"),
            "answer": answer,
            "fullAnswer": rec.get("full_answer", answer),
            "isBalanced": True,
            "types": {
                "structural": rec.get("structural", "query"),
                "semantic": rec.get("semantic", "attr"),
                "detailed": rec.get("detailed", "attr"),
            },
        }
    return write_json(path, out)
