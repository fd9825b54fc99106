"""Name -> scorer table for the seven supported benchmarks.

Every scorer is called as ``SCORERS[name](annotations, predictions, **options)`` and returns a
flat ``dict[str, float | int]`` of metrics (percentages in 0-100) that always includes
``n_questions``, ``n_predictions`` and ``n_missing``. Only ``sqa_img`` and ``pope`` accept an
option, ``split``. See each module's docstring for the file layouts and id conventions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.gqa import score_gqa
from msl_ablate.evaluation.scoring.mmbench import score_mmbench
from msl_ablate.evaluation.scoring.mme import score_mme
from msl_ablate.evaluation.scoring.pope import score_pope
from msl_ablate.evaluation.scoring.scienceqa import score_sqa_img
from msl_ablate.evaluation.scoring.textvqa import score_textvqa
from msl_ablate.evaluation.scoring.vqav2 import score_vqav2

Scorer = Callable[..., dict[str, Any]]

SCORERS: dict[str, Scorer] = {
    "vqav2": score_vqav2,
    "textvqa": score_textvqa,
    "gqa": score_gqa,
    "sqa_img": score_sqa_img,
    "pope": score_pope,
    "mme": score_mme,
    "mmbench": score_mmbench,
}

# Benchmarks whose scorer takes a `split` keyword.
SPLIT_BENCHMARKS: frozenset[str] = frozenset({"sqa_img", "pope"})


def score(
    benchmark: str, annotations: Path | str, predictions: Path | str, **options: Any
) -> dict[str, Any]:
    """Score an answer file with the named benchmark's official metric.

    Args:
        benchmark: One of :data:`SCORERS`.
        annotations: Annotation file or directory, in the benchmark's official layout.
        predictions: LLaVA answer file (JSON lines ``{"question_id", "text"}``).
        **options: Scorer options (``split`` for ``sqa_img`` and ``pope``).

    Returns:
        The metrics.

    Raises:
        ValueError: For an unknown benchmark or option, malformed files or unknown ids.
    """
    if benchmark not in SCORERS:
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {sorted(SCORERS)})")
    unknown = set(options) - ({"split"} if benchmark in SPLIT_BENCHMARKS else set())
    if unknown:
        raise ValueError(f"benchmark {benchmark!r} takes no option(s) {sorted(unknown)}")
    return SCORERS[benchmark](annotations, predictions, **options)
