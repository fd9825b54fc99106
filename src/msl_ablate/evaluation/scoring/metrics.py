"""Small aggregation helpers shared by the scorers (percent accuracies, per-group breakdowns)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from msl_ablate.evaluation.scoring.files import percent


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
