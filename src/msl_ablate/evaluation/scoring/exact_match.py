"""Exact match on a LLaVA-format conversation file: the held-out split of a training dataset.

The file is a training-style JSON list (``id``, ``image``, ``conversations``). The reference
answer of a record is its ``answer`` field, else the text of its last ``gpt`` turn; records may
carry a ``question_type`` for a per-type breakdown. Answers are compared after the official VQA
normalisation (``normalize.normalize_answer``), the same rule the VQA scorers use.

With ``baseline`` (another conversation file, usually the training split) the scorer also
reports the majority-answer baseline: each question type answered with its most frequent
answer in that file (one type for records without ``question_type``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from msl_ablate.evaluation.scoring.files import load_json
from msl_ablate.evaluation.scoring.metrics import Unit, exact_units, mean_metrics, summarize
from msl_ablate.evaluation.scoring.normalize import normalize_answer
from msl_ablate.evaluation.scoring.predictions import load_predictions

ANSWER_SPEAKERS = ("gpt", "assistant")


@dataclass(frozen=True)
class Reference:
    """The reference answer of one record and its question type (None when untyped)."""

    question_id: str
    answer: str
    question_type: str | None


def reference_answers(path: Path | str) -> list[Reference]:
    """Read the reference answer of every record of a LLaVA conversation file.

    Raises:
        ValueError: The file is not a list of records, or a record carries no answer (naming
            the file and the record).
    """
    path = Path(path)
    records = load_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of LLaVA records")
    refs = []
    for i, rec in enumerate(records):
        rid = str(rec.get("id", f"#{i}")) if isinstance(rec, dict) else f"#{i}"
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        answer = rec.get("answer") if isinstance(rec, dict) else None
        if answer is None and turns and turns[-1].get("from") in ANSWER_SPEAKERS:
            answer = turns[-1].get("value")
        if not isinstance(answer, str):
            raise ValueError(
                f"{path}: record {rid} carries no answer: expected an 'answer' field or a last "
                f"conversation turn from {' or '.join(ANSWER_SPEAKERS)}; exact match needs one"
            )
        refs.append(Reference(rid, answer, rec.get("question_type")))
    return refs


def majority_answers(refs: list[Reference]) -> dict[str | None, str]:
    """The most frequent (normalised) answer of each question type."""
    counts: dict[str | None, Counter] = {}
    for ref in refs:
        counts.setdefault(ref.question_type, Counter())[normalize_answer(ref.answer)] += 1
    return {qtype: c.most_common(1)[0][0] for qtype, c in counts.items()}


def exact_match_units(
    annotations: Path | str, predictions: Path | str, baseline: Path | str | None = None
) -> list[Unit]:
    """One unit per record: its normalised answer right or not, its question type; with
    ``baseline``, also whether the baseline's majority answer for its type is right
    (``baseline_score``).

    Raises:
        ValueError: Malformed files, a record without an answer, or an unknown prediction id.
    """
    refs = reference_answers(annotations)
    preds = load_predictions(predictions)
    preds.check_known({r.question_id for r in refs})
    units = exact_units(((r.question_id, r.answer, r.question_type) for r in refs), preds.texts)
    if baseline is not None:
        majority = majority_answers(reference_answers(baseline))
        for unit, ref in zip(units, refs, strict=True):
            right = majority.get(ref.question_type) == normalize_answer(ref.answer)
            unit["baseline_score"] = float(right)
    return units


def exact_match_metrics(units: list[Unit]) -> dict[str, float | int]:
    """``score_exact_match``'s metrics from its units (``exact_match_units``)."""
    metrics = mean_metrics(units, "exact_match")
    if units and "baseline_score" in units[0]:
        guesses = ((u["baseline_score"], u["groups"]) for u in units)
        metrics |= summarize(guesses, "majority_baseline")
    return metrics


def score_exact_match(
    annotations: Path | str, predictions: Path | str, baseline: Path | str | None = None
) -> dict[str, float | int]:
    """Score an answer file against a conversation file's reference answers.

    Args:
        annotations: The LLaVA conversation file that was answered.
        predictions: LLaVA answer file keyed by record id.
        baseline: A conversation file whose majority answers give the baseline.

    Returns:
        ``exact_match`` and ``exact_match/<question type>`` (percent), with ``baseline``
        also ``majority_baseline`` and ``majority_baseline/<question type>``; ``n_questions``,
        ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: Malformed files, a record without an answer, or an unknown prediction id.
    """
    return exact_match_metrics(exact_match_units(annotations, predictions, baseline))
