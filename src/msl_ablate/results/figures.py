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


def _save(fig, out_stem: Path) -> list[Path]:
    """Write ``<out_stem>.png`` and ``.pdf`` and close the figure."""
    fig.tight_layout()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


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
    return _save(fig, out_stem)


def radar(
    rows: dict[str, dict[str, float]],
    columns: list[str],
    title: str,
    out_stem: Path,
    dashed: tuple[str, ...] = (),
) -> list[Path]:
    """Rows as polygons over the benchmarks (the paper's Figure 1), written as PNG and PDF.

    Benchmarks have different units (MME-P sums to 2000), so each spoke is scaled to the largest
    value drawn on it, which its label gives.

    Args:
        rows: Row label -> benchmark -> value (missing or NaN: drawn at the centre).
        columns: The benchmarks, clockwise from the top.
        title: The figure's title.
        out_stem: Path without suffix.
        dashed: Rows drawn dashed and unfilled (chance, published numbers).
    """
    if len(columns) < 3:
        raise ValueError(f"a radar needs at least 3 benchmarks, got {columns}")
    values = {label: [row.get(c, math.nan) for c in columns] for label, row in rows.items()}
    top = [max((v[i] for v in values.values() if not math.isnan(v[i])), default=0.0) or 1.0
           for i in range(len(columns))]  # fmt: skip
    angles = [math.pi / 2 - 2 * math.pi * i / len(columns) for i in range(len(columns))]
    fig, ax = plt.subplots(figsize=(6.4, 5.2), subplot_kw={"projection": "polar"})
    for k, (label, row) in enumerate(values.items()):
        r = [0.0 if math.isnan(v) else v / t for v, t in zip(row, top, strict=True)]
        style = {"linestyle": "--", "color": "grey"} if label in dashed else {"color": f"C{k}"}
        ax.plot([*angles, angles[0]], [*r, r[0]], linewidth=1.5, label=label, **style)
        if label not in dashed:
            ax.fill([*angles, angles[0]], [*r, r[0]], alpha=0.08, color=f"C{k}")
    ax.set_xticks(angles, [f"{c}\n(max {t:.4g})" for c, t in zip(columns, top, strict=True)],
                  fontsize=8)  # fmt: skip
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], [], fontsize=6)
    ax.set_ylim(0, 1.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=7, frameon=False)
    ax.set_title(title, fontsize=10, pad=18)
    return _save(fig, out_stem)
