"""Statistics of comparisons: seed intervals, the paired bootstrap, factorial effects, rank agreement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from msl_ablate.evaluation.scoring.metrics import mean_headline
from msl_ablate.evaluation.scoring.mme import mme_headline
from msl_ablate.results.statistics import (
    align_units,
    factorial_effects,
    paired_bootstrap,
    rank_agreement,
    seed_interval,
)


def test_seed_interval_is_students_t() -> None:
    interval = seed_interval([1.0, 2.0, 3.0])
    # mean 2, standard error 1/sqrt(3), t(0.975, df=2) = 4.3027
    assert interval.estimate == pytest.approx(2.0)
    assert interval.high - 2.0 == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert interval.low == pytest.approx(2.0 - (interval.high - 2.0))
    single = seed_interval([5.0])
    assert single.estimate == 5.0 and math.isnan(single.low) and str(single) == "5.0"


def _cell(scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"unit": [f"q{i}" for i in range(len(scores))], "score": scores})


def test_paired_bootstrap_covers_a_known_difference() -> None:
    # Cell b answers right every question a does, plus 10% of the questions more: a true
    # difference of 10 points, with per-question outcomes that are strongly paired.
    rng = np.random.default_rng(0)
    n = 1000
    a = (rng.random(n) < 0.6).astype(float)
    gained = np.flatnonzero(a == 0)[:100]
    b = a.copy()
    b[gained] = 1.0
    shuffled = rng.permutation(n)  # b's units come in another order: alignment is by id
    cells = align_units([[_cell(a)], [_cell(b).iloc[shuffled]]])

    diff = paired_bootstrap(cells[0], cells[1], mean_headline, n_resamples=1000)

    assert diff.estimate == pytest.approx(10.0)
    assert diff.low < 10.0 < diff.high and diff.excludes_zero
    # Paired: the interval is far narrower than two independent accuracies' (about +-4.2).
    assert diff.high - diff.low < 5.0


def test_paired_bootstrap_of_equal_cells_includes_zero() -> None:
    rng = np.random.default_rng(1)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    flip = rng.choice(400, 40, replace=False)  # 40 questions flip, in both directions
    b[flip] = 1.0 - b[flip]
    cells = align_units([[_cell(a)], [_cell(b)]])
    diff = paired_bootstrap(cells[0], cells[1], mean_headline, n_resamples=1000)
    assert diff.low < 0.0 < diff.high and not diff.excludes_zero


def test_paired_bootstrap_averages_seeds_and_recomputes_the_headline() -> None:
    # MME: per image, two questions; two seeds per cell.
    units = pd.DataFrame(
        {"unit": ["c/1", "c/2", "c/3", "c/4"], "category": ["color"] * 4, "asked": [2] * 4}
    )
    a = [units.assign(right=r) for r in ([2, 1, 1, 0], [2, 2, 1, 0])]
    b = [units.assign(right=r) for r in ([2, 2, 2, 1], [2, 2, 2, 2])]
    cells = align_units([a, b])
    diff = paired_bootstrap(cells[0], cells[1], mme_headline, n_resamples=200)
    # a: (50 + 25 | 62.5 + 50) -> 93.75; b: (87.5 + 75 | 100 + 100) -> 181.25
    assert diff.estimate == pytest.approx(181.25 - 93.75)


def test_align_units_refuses_other_questions() -> None:
    with pytest.raises(ValueError, match="unit tables differ"):
        align_units([[_cell(np.ones(3))], [_cell(np.ones(4))]])


def test_factorial_effects_find_the_main_effect_that_is_there() -> None:
    rng = np.random.default_rng(2)
    rows = [
        {"vision": v, "lm": m, "value": 50 + (8 if v == "full" else 0) + rng.normal(0, 1)}
        for v in ("frozen", "full")
        for m in ("frozen", "full", "lora")
        for _ in range(3)  # three seeds
    ]
    table = factorial_effects(pd.DataFrame(rows), ["vision", "lm"])
    assert list(table.index) == ["vision", "lm", "vision x lm", "Residual"]
    assert table.loc["vision", "PR(>F)"] < 1e-6
    assert table.loc["lm", "PR(>F)"] > 0.01 and table.loc["vision x lm", "PR(>F)"] > 0.01


def test_rank_agreement_is_kendalls_tau() -> None:
    assert rank_agreement(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
    assert rank_agreement(["c", "b", "a"], ["a", "b", "c"]) == pytest.approx(-1.0)
    assert rank_agreement(["a", "c", "b", "x"], ["a", "b", "c"]) == pytest.approx(1 / 3)
    assert math.isnan(rank_agreement(["a"], ["a", "b"]))
