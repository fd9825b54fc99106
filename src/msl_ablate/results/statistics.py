"""Uncertainty in every comparison: intervals over seeds, paired bootstrap over questions, and
main effects with their interaction for factorial sweeps.

scipy does the statistics (``stats.t`` intervals, ``stats.bootstrap``, ``stats.kendalltau``) and
statsmodels the factorial analysis of variance; this module only arranges the data for them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000

# A cell's per-unit outcomes, one mapping of columns per seed: {column: array over units}.
Columns = Mapping[str, np.ndarray]
Statistic = Callable[[Columns], float]


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (``low``/``high`` NaN when it has none)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (a difference larger than its
        uncertainty)."""
        return bool(self.low > 0 or self.high < 0)

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.estimate:.1f}"
        return f"{self.estimate:.1f} [{self.low:.1f}, {self.high:.1f}]"


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds with Student's t interval (no interval from a single seed)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("seed_interval: no values")
    mean = float(x.mean())
    if len(x) < 2 or np.all(x == x[0]):
        half = math.nan if len(x) < 2 else 0.0
        return Interval(mean, mean - half, mean + half, len(x))
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=stats.sem(x))
    return Interval(mean, float(low), float(high), len(x))


def align_units(cells: Sequence[Sequence[pd.DataFrame]]) -> list[list[Columns]]:
    """Each cell's per-seed unit tables as columns over the same units, in the same order.

    Args:
        cells: Per cell, per seed, a unit table (a ``unit`` column and the scorer's columns).

    Raises:
        ValueError: The tables do not hold the same units (another benchmark or protocol).
    """
    tables = [t for cell in cells for t in cell]
    if not tables:
        raise ValueError("align_units: no unit tables")
    order = sorted(tables[0]["unit"].astype(str))
    for table in tables[1:]:
        units = set(table["unit"].astype(str))
        if units != set(order):
            diff = sorted(units.symmetric_difference(order))[:5]
            raise ValueError(
                f"unit tables differ ({len(units)} vs {len(order)} units, e.g. {diff}): "
                "compare evaluations of the same benchmark files and protocol only"
            )
    aligned = []
    for cell in cells:
        seeds = []
        for table in cell:
            t = table.assign(unit=table["unit"].astype(str)).set_index("unit").loc[order]
            seeds.append({c: t[c].to_numpy() for c in t.columns})
        aligned.append(seeds)
    return aligned


def cell_statistic(seeds: Sequence[Columns], statistic: Statistic, idx: np.ndarray) -> float:
    """A cell's headline on the units ``idx``: the statistic per seed, averaged over seeds."""
    return float(np.mean([statistic({k: v[idx] for k, v in s.items()}) for s in seeds]))


def paired_bootstrap(
    cell_a: Sequence[Columns],
    cell_b: Sequence[Columns],
    statistic: Statistic,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Difference ``b - a`` of two cells' headlines with a paired bootstrap interval.

    Questions (units) are resampled with replacement, the same resample for both cells (they
    answered the same questions), and the headline is recomputed from the resampled units
    exactly as the scorer computes it (``statistic``), per seed, averaged over seeds.

    Args:
        cell_a, cell_b: Per seed, the aligned unit columns (``align_units``).
        statistic: The benchmark's headline from unit columns (``HEADLINES_FROM_UNITS``).
        confidence: Of the percentile interval.
        n_resamples: Bootstrap resamples.
        seed: Of the resampling.
    """
    n = len(next(iter(cell_a[0].values())))
    everything = np.arange(n)

    def difference(idx: np.ndarray) -> float:
        return cell_statistic(cell_b, statistic, idx) - cell_statistic(cell_a, statistic, idx)

    estimate = difference(everything)
    if n < 2:
        return Interval(estimate, math.nan, math.nan, n)
    result = stats.bootstrap(
        (everything,),
        difference,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",  # BCa's jackknife fails on the flat distributions of tiny suites
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high), n)


def factorial_effects(df: pd.DataFrame, factors: Sequence[str], response: str = "value"):
    """Main effects and interactions of a factorial sweep (two-way ANOVA, type II).

    Args:
        df: One row per run (seeds are the replicates), the factors as columns.
        factors: The swept axes, e.g. ``["vision_mode", "lm_mode"]``.
        response: The measured column.

    Returns:
        statsmodels' ANOVA table (sum of squares, df, F, p per effect and the residual).
    """
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    terms = " * ".join(f"C(Q('{f}'))" for f in factors)
    with warnings.catch_warnings():  # a constant benchmark (all 0) gives F = 0/0: p is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        model = ols(f"Q('{response}') ~ {terms}", data=df).fit()
        table = anova_lm(model, typ=2)
    table.index = [_effect_name(name, factors) for name in table.index]
    return table


def _effect_name(term: str, factors: Sequence[str]) -> str:
    """``C(Q('a')):C(Q('b'))`` -> ``a x b``."""
    names = [f for part in term.split(":") for f in factors if f"Q('{f}')" in part]
    return " x ".join(names) if names else term


def rank_agreement(measured: Sequence[str], published: Sequence[str]) -> float:
    """Kendall's tau between two orderings (best first) of the same choices."""
    common = [c for c in published if c in measured]
    if len(common) < 2:
        return math.nan
    tau = stats.kendalltau([measured.index(c) for c in common], list(range(len(common))))
    return float(tau.statistic)
