"""Small aggregation helpers shared by the scorers (percent accuracies, per-group breakdowns).

Every scorer first lists its *units*, the things its headline metric averages or counts over
(a question; an MME image with its question pair; an MMBench question with its circular
copies), as plain records with a ``unit`` id, then builds its metrics from them. The same
records, kept beside the answer file, let a report resample questions (the paired bootstrap)
and recompute the headline exactly as the scorer does (``headline_from_units``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from msl_ablate.evaluation.scoring.files import percent
from msl_ablate.evaluation.scoring.normalize import normalize_answer

# One unit's outcome: ``unit`` (id), what the scorer needs (e.g. ``score``, ``groups``,
# ``answered``), JSON-serialisable.
Unit = dict[str, Any]
UNITS_FILE = "units.jsonl"  # kept beside an answer file: one JSON line per unit


def summarize(
    items: Iterable[tuple[float, Sequence[str | None]]], name: str = "accuracy"
) -> dict[str, float]:
    """Average per-question scores overall and per group, in percent.

    Args:
        items: ``(score, groups)`` per question, ``score`` in ``[0, 1]`` and ``groups`` the
            group labels the question belongs to (``None`` labels are skipped).
        name: Metric name; groups are reported as ``"<name>/<group>"``.

    Returns:
        ``{name: overall, f"{name}/{group}": per-group}``, all in percent (0 when empty).
    """
    total, count = 0.0, 0
    group_sum: dict[str, float] = defaultdict(float)
    group_n: dict[str, int] = defaultdict(int)
    for score, groups in items:
        total += score
        count += 1
        for group in groups:
            if group is not None:
                group_sum[group] += score
                group_n[group] += 1
    result = {name: percent(total, count)}
    for group in sorted(group_n):
        result[f"{name}/{group}"] = percent(group_sum[group], group_n[group])
    return result


def coverage(n_questions: int, n_predictions: int) -> dict[str, int]:
    """Report how many scored questions had a prediction.

    Args:
        n_questions: Questions scored.
        n_predictions: Of those, how many had a prediction.

    Returns:
        ``n_questions``, ``n_predictions`` and ``n_missing`` (missing ones count as wrong).
    """
    return {
        "n_questions": n_questions,
        "n_predictions": n_predictions,
        "n_missing": n_questions - n_predictions,
    }


def mean_metrics(units: Sequence[Unit], name: str = "accuracy") -> dict[str, float | int]:
    """Metrics of a benchmark whose headline is the mean ``score`` of its units.

    Units carry ``score`` (0..1), ``groups`` (breakdown labels) and ``answered``.
    """
    return {
        **summarize(((u["score"], u["groups"]) for u in units), name),
        **coverage(len(units), sum(1 for u in units if u["answered"])),
    }


def exact_units(
    questions: Iterable[tuple[str, str, str | None]], texts: Mapping[str, str]
) -> list[Unit]:
    """One unit per ``(id, right answer, group)``: the answer in ``texts`` right or not after
    the official normalisation (GQA, held-out exact match)."""
    units = []
    for qid, answer, group in questions:
        text = texts.get(qid)
        right = text is not None and normalize_answer(text) == normalize_answer(answer)
        units.append(
            {"unit": qid, "score": float(right), "groups": [group], "answered": text is not None}
        )
    return units


def mean_headline(columns: Mapping[str, np.ndarray]) -> float:
    """The headline of ``mean_metrics`` from unit columns: the mean ``score``, in percent."""
    scores = columns["score"]
    return float(100.0 * scores.mean()) if len(scores) else 0.0
