"""A study's figure (matplotlib): one panel per benchmark, each on its own scale.

``bars`` (choices: LMs, encoders, strategies) draws each cell's mean over seeds with its 95%
interval as an error bar; ``lines`` (an ordered axis: resolution) draws the mean with the interval
as a band. A dashed line marks uniform guessing where the benchmark has it.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: works on clusters and in CI

import matplotlib.pyplot as plt  # noqa: E402

from msl_ablate.results.statistics import Interval  # noqa: E402
from msl_ablate.results.study import Study  # noqa: E402

PLOTS = ("bars", "lines")


def _bounds(cell: Interval | float) -> tuple[float, float, float]:
    """Mean, low, high of a table cell (no interval: the mean; no result: NaN)."""
    if not isinstance(cell, Interval):
        return math.nan, math.nan, math.nan
    low = cell.estimate if math.isnan(cell.low) else cell.low
    high = cell.estimate if math.isnan(cell.high) else cell.high
    return cell.estimate, low, high


def draw(study: Study, plot: str, title: str, out_stem: Path) -> list[Path]:
    """Draw the study and write ``<out_stem>.png`` and ``.pdf``; returns the paths."""
    if plot not in PLOTS:
        raise ValueError(f"report.plot must be one of {PLOTS}, got {plot!r}")
    table = study.intervals()
    n = len(study.columns)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    x = list(range(len(study.cells)))
    for k, column in enumerate(study.columns):
        ax = axes[k // ncols][k % ncols]
        mean, low, high = zip(*(_bounds(c) for c in table[column]), strict=True)
        if plot == "bars":
            err = [[m - lo for m, lo in zip(mean, low, strict=True)],
                   [hi - m for m, hi in zip(mean, high, strict=True)]]  # fmt: skip
            ax.bar(x, mean, yerr=err, capsize=3, color=[f"C{i}" for i in x])
        else:
            ax.plot(x, mean, marker="o")
            ax.fill_between(x, low, high, alpha=0.25)
        chance = study.chance.get(column)
        if chance is not None and not math.isnan(chance):
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_title(column)
        ax.set_xticks(x, study.cells, rotation=30 if plot == "bars" else 0, ha="right"
                      if plot == "bars" else "center", fontsize=8)  # fmt: skip
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.suptitle(f"{title} (mean over seeds, 95% interval; dashed: chance)", fontsize=10)
    fig.tight_layout()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
