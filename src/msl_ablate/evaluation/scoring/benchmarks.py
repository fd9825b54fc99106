"""Name -> scorer table: the seven benchmarks of the paper's table and held-out exact match.

Every scorer is called as ``SCORERS[name](annotations, predictions, **options)`` and returns a
flat ``dict[str, float | int]`` of metrics (percentages in 0-100) that always includes
``n_questions``, ``n_predictions`` and ``n_missing``. A scorer's options are its keyword
parameters (``split`` for ``sqa_img`` and ``pope``, ``baseline`` for ``exact_match``); see each
module's docstring for the file layouts and id conventions.

``UNITS[name]`` takes the same arguments and returns the per-unit outcomes the scorer's metrics
are built from (``METRICS_FROM_UNITS[name]``); ``HEADLINES_FROM_UNITS[name]`` recomputes the headline metric from their columns
(numpy arrays), so a resample of units (the paired bootstrap) gives the scorer's own number.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msl_ablate.evaluation.scoring.exact_match import (
    exact_match_metrics,
    exact_match_units,
    score_exact_match,
)
from msl_ablate.evaluation.scoring.gqa import gqa_units, score_gqa
from msl_ablate.evaluation.scoring.metrics import Unit, mean_headline, mean_metrics
from msl_ablate.evaluation.scoring.mmbench import mmbench_metrics, mmbench_units, score_mmbench
from msl_ablate.evaluation.scoring.mme import mme_headline, mme_metrics, mme_units, score_mme
from msl_ablate.evaluation.scoring.normalize import normalize_answer
from msl_ablate.evaluation.scoring.pope import (
    pope_headline,
    pope_metrics,
    pope_units,
    score_pope,
)
from msl_ablate.evaluation.scoring.scienceqa import score_sqa_img, sqa_img_metrics, sqa_img_units
from msl_ablate.evaluation.scoring.textvqa import score_textvqa, textvqa_units
from msl_ablate.evaluation.scoring.vqav2 import score_vqav2, vqav2_units

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
UNITS: dict[str, Callable[..., list[Unit]]] = {
    "vqav2": vqav2_units,
    "textvqa": textvqa_units,
    "gqa": gqa_units,
    "sqa_img": sqa_img_units,
    "pope": pope_units,
    "mme": mme_units,
    "mmbench": mmbench_units,
    "exact_match": exact_match_units,
}
METRICS_FROM_UNITS: dict[str, Callable[[list[Unit]], dict[str, Any]]] = {
    **{name: mean_metrics for name in ("vqav2", "textvqa", "gqa")},
    "sqa_img": sqa_img_metrics,
    "pope": pope_metrics,
    "mme": mme_metrics,
    "mmbench": mmbench_metrics,
    "exact_match": exact_match_metrics,
}
HEADLINES_FROM_UNITS: dict[str, Callable[[Mapping[str, np.ndarray]], float]] = {
    **{name: mean_headline for name in UNITS},
    "pope": pope_headline,
    "mme": mme_headline,
}


def _mmvet(lines: list[dict[str, Any]]) -> dict[str, str]:
    # MM-Vet's grader reads {"v1_<n>": answer}; LLaVA's question file numbers them n.
    return {(str(x["question_id"]) if str(x["question_id"]).startswith("v1_")
             else f"v1_{x['question_id']}"): x["text"] for x in lines}  # fmt: skip


def _vqav2_upload(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # EvalAI's VQAv2 upload: [{"question_id": int, "answer": processed}], as LLaVA's
    # convert_vqav2_for_submission.py writes it (with the EvalAI answer processing).
    return [{"question_id": int(q) if str(q := x["question_id"]).isdigit() else q,
             "answer": normalize_answer(x["text"])} for x in lines]  # fmt: skip


# External graders' answer formats: name -> (file written next to the answer file, its
# content from the answer lines).
EXPORTS: dict[str, tuple[str, Callable[[list[dict[str, Any]]], Any]]] = {
    "mmvet": ("mmvet_answers.json", _mmvet),
    "vqav2_upload": ("vqav2_upload.json", _vqav2_upload),
}


def option_problem(benchmark: str, options: dict[str, Any]) -> str | None:
    """Why a scorer cannot take these options (bound to its signature), or None."""
    params = list(inspect.signature(SCORERS[benchmark]).parameters.values())[2:]
    allowed = sorted(p.name for p in params)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        return f"scorer {benchmark!r} takes no option(s) {unknown} (its options: {allowed})"
    return None


def _check(benchmark: str, options: dict[str, Any]) -> None:
    if benchmark not in SCORERS:
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {sorted(SCORERS)})")
    problem = option_problem(benchmark, options)
    if problem:
        raise ValueError(problem)


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
    _check(benchmark, options)
    return SCORERS[benchmark](annotations, predictions, **options)


def score_with_units(
    benchmark: str, annotations: Path | str, predictions: Path | str, **options: Any
) -> tuple[dict[str, Any], list[Unit]]:
    """``score`` and the units its metrics are built from, reading the files once."""
    _check(benchmark, options)
    units = UNITS[benchmark](annotations, predictions, **options)
    return METRICS_FROM_UNITS[benchmark](units), units
