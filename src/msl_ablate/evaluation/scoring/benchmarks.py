"""Name -> scorer table: the seven benchmarks of the paper's table and held-out exact match.

Every scorer is called as ``SCORERS[name](annotations, predictions, **options)`` and returns a
flat ``dict[str, float | int]`` of metrics (percentages in 0-100) that always includes
``n_questions``, ``n_predictions`` and ``n_missing``. A scorer's options are its keyword
parameters (``split`` for ``sqa_img`` and ``pope``, ``baseline`` for ``exact_match``); see each
module's docstring for the file layouts and id conventions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.exact_match import score_exact_match
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
    "exact_match": score_exact_match,
}
# External graders' answer formats: name -> file written next to the answer file.
EXPORTS = {"mmvet": "mmvet_answers.json"}  # MM-Vet's grader reads {question_id: answer}


def option_problem(benchmark: str, options: dict[str, Any]) -> str | None:
    """Why a scorer cannot take these options (bound to its signature), or None."""
    params = list(inspect.signature(SCORERS[benchmark]).parameters.values())[2:]
    allowed = sorted(p.name for p in params)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        return f"scorer {benchmark!r} takes no option(s) {unknown} (its options: {allowed})"
    return None


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
    problem = option_problem(benchmark, options)
    if problem:
        raise ValueError(problem)
    return SCORERS[benchmark](annotations, predictions, **options)
