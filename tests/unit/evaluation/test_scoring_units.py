"""Per-unit outcomes: the headline recomputed from a scorer's units is the scorer's own number."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from msl_ablate.evaluation.headline import HEADLINE_METRICS
from msl_ablate.evaluation.oracle import guess_pools, oracle_answers
from msl_ablate.evaluation.scoring import score
from msl_ablate.evaluation.scoring.benchmarks import HEADLINES_FROM_UNITS, UNITS, score_with_units
from msl_ablate.evaluation.scoring.predictions import write_predictions
from msl_ablate.evaluation.suite import annotations_path, generate_suite

OPTIONS = {"sqa_img": {"split": "test"}}
BENCHMARKS = ("vqav2", "gqa", "textvqa", "pope", "mme", "sqa_img", "mmbench")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_suite(
        tmp_path_factory.mktemp("suite") / "s", seed=1, image_size=32, n_questions=40
    )


def _noisy_answers(benchmark: str, annotations: Path, seed: int) -> dict[str, str]:
    """Oracle answers, about a third replaced by a guess and a tenth left out."""
    rng = random.Random(seed)
    pools = guess_pools(benchmark, annotations)
    answers = {}
    for qid, right in oracle_answers(benchmark, annotations).items():
        draw = rng.random()
        if draw < 0.1:
            continue
        answers[qid] = rng.choice(pools[qid]) if draw < 0.45 else right
    return answers


def _columns(units: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([u[key] for u in units]) for key in units[0]}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_headline_from_units_is_the_scorers(suite: Path, benchmark: str, tmp_path: Path) -> None:
    annotations = suite / annotations_path(benchmark)
    options = OPTIONS.get(benchmark, {})
    for seed in range(3):
        answers = _noisy_answers(benchmark, annotations, seed)
        predictions = write_predictions(tmp_path / f"answers{seed}.jsonl", answers)
        metrics = score(benchmark, annotations, predictions, **options)
        units = UNITS[benchmark](annotations, predictions, **options)
        assert score_with_units(benchmark, annotations, predictions, **options) == (metrics, units)

        headline = metrics[HEADLINE_METRICS[benchmark][0]]
        assert 0 < headline < (1000 if benchmark == "mme" else 100)  # neither perfect nor null
        assert HEADLINES_FROM_UNITS[benchmark](_columns(units)) == pytest.approx(headline)
        assert len({u["unit"] for u in units}) == len(units)


@pytest.mark.parametrize("benchmark", ["pope", "mme", "mmbench"])
def test_units_are_what_the_metric_counts_over(suite: Path, benchmark: str, tmp_path: Path):
    annotations = suite / annotations_path(benchmark)
    answers = oracle_answers(benchmark, annotations)
    units = UNITS[benchmark](annotations, write_predictions(tmp_path / "a.jsonl", answers))
    expected = {
        "pope": len(answers),  # a question
        "mme": len(answers) // 2,  # an image with its yes and no question
        "mmbench": len(answers) // 4,  # a question with its three rotated copies
    }
    assert len(units) == expected[benchmark]
