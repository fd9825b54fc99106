"""Exact-match accuracy after light normalisation, overall and per question type."""

from __future__ import annotations

import re
import string

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, squeeze spaces."""
    text = _PUNCT.sub(" ", text.lower())
    words = [w for w in text.split() if w not in ("a", "an", "the")]
    return " ".join(words)


def exact_match_scores(
    predictions: list[str], answers: list[str], question_types: list[str]
) -> dict[str, float]:
    """Percent of predictions equal to the answer after normalisation.

    Returns:
        ``{"overall": acc, <type>: acc, ...}``.

    Raises:
        ValueError: The three lists differ in length.
    """
    if not len(predictions) == len(answers) == len(question_types):
        raise ValueError(
            f"got {len(predictions)} predictions, {len(answers)} answers, {len(question_types)} types"
        )
    hits: dict[str, list[bool]] = {}
    for pred, ans, qtype in zip(predictions, answers, question_types, strict=True):
        hits.setdefault(qtype, []).append(normalize_answer(pred) == normalize_answer(ans))
    scores = {t: 100.0 * sum(h) / len(h) for t, h in sorted(hits.items())}
    flat = [x for h in hits.values() for x in h]
    scores["overall"] = 100.0 * sum(flat) / max(1, len(flat))
    return scores
