"""The paper's findings, tested on a study: which ones the measured cells reproduce, by how much.

A finding is reproduced only when its differences are larger than their uncertainty (a paired
bootstrap interval that excludes zero); ``similar`` asks the opposite, that none is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from msl_ablate.results.statistics import Interval, rank_agreement
from msl_ablate.results.study import Study, StudyError, UnitLoader

TESTS = ("best", "similar", "better")


@dataclass(frozen=True)
class Verdict:
    """A finding as it came out: ``reproduced`` (True/False; None: its cells were not all run)
    and what was measured."""

    claim: str
    reproduced: bool | None
    evidence: str


def _columns(study: Study, benchmarks: Sequence[str]) -> list[str]:
    if not benchmarks:
        return study.columns
    unknown = [b for b in benchmarks if b not in study.columns]
    if unknown:
        raise StudyError(f"study {study.name}: no column {unknown} (columns: {study.columns})")
    return list(benchmarks)


def check_finding(
    study: Study,
    claim: str,
    test: str,
    cells: Sequence[str],
    benchmarks: Sequence[str],
    units: UnitLoader,
    aliases: Mapping[str, str] | None = None,
    **bootstrap,
) -> Verdict:
    """Test one finding (``ReportConfig.findings``) on the study's measured cells.

    Args:
        study: The study.
        claim: The finding in words.
        test: ``best``, ``similar`` or ``better`` (``config.schema.FindingConfig``).
        cells: The cells the finding names.
        benchmarks: The columns it is tested on (empty: every column).
        units: Per-unit outcomes loader, for paired differences.
        aliases: Names the finding may use for cells (e.g. ``high`` -> ``128``).
    """
    columns = _columns(study, benchmarks)
    named = [(aliases or {}).get(c, c) for c in cells]
    missing = [c for c, n in zip(cells, named, strict=True) if n not in study.cells]
    if missing:
        return Verdict(claim, None, f"not measured: no results for {missing}")
    if test == "best":
        return _check_best(study, claim, named, units, **bootstrap)
    if test in ("better", "similar"):
        pairs = (
            [(named[1], named[0])]
            if test == "better"
            else [(named[0], other) for other in named[1:]]
        )
        diffs = {
            (a, b, col): study.difference(a, b, col, units, **bootstrap)
            for a, b in pairs
            for col in columns
        }
        clear = [d for d in diffs.values() if d.excludes_zero]
        parts = [f"{b} - {a} on {col}: {d}" for (a, b, col), d in diffs.items()]
        if test == "better":
            ok = all(d.excludes_zero and d.estimate > 0 for d in diffs.values())
        else:
            ok = not clear
        head = f"{len(clear)} of {len(diffs)} differences exceed their 95% interval; "
        return Verdict(claim, ok, head + "; ".join(parts))
    raise StudyError(f"finding {claim!r}: unknown test {test!r} (tests: {list(TESTS)})")


def _check_best(
    study: Study, claim: str, named: Sequence[str], units: UnitLoader, **bootstrap
) -> Verdict:
    """``best``: a named cell is best by mean rank, and against the best cell it does not name
    it is better beyond the interval on some benchmark and worse beyond it on none."""
    ranks = study.mean_ranks()
    best = ranks.index[0]
    evidence = f"best overall (mean rank over {len(study.columns)} benchmarks): {best} "
    evidence += f"({ranks.iloc[0]:.2f})"
    rivals = [c for c in ranks.index if c not in named]
    if best not in named or not rivals:
        if len(ranks) > 1:
            evidence += f", then {ranks.index[1]} ({ranks.iloc[1]:.2f})"
        return Verdict(claim, best in named and not rivals, evidence)
    rival = rivals[0]
    diffs = {col: study.difference(rival, best, col, units, **bootstrap) for col in study.columns}
    wins = [c for c, d in diffs.items() if d.excludes_zero and d.estimate > 0]
    losses = [c for c, d in diffs.items() if d.excludes_zero and d.estimate < 0]
    evidence += (
        f"; against the best other cell, {rival} ({ranks[rival]:.2f}): better beyond the 95% "
        f"interval on {len(wins)} of {len(diffs)} benchmarks ({', '.join(wins) or 'none'}), "
        f"worse on {len(losses)} ({', '.join(losses) or 'none'})"
    )
    return Verdict(claim, bool(wins) and not losses, evidence)


def ordering_agreement(study: Study, paper_order: Sequence[str]) -> tuple[list[str], float]:
    """The measured ordering (by mean rank) and Kendall's tau with the paper's ordering."""
    measured = [c for c in study.mean_ranks().index if c in paper_order]
    return measured, rank_agreement(measured, list(paper_order))


def findings_markdown(verdicts: Sequence[Verdict], ordering: tuple[list[str], float] | None) -> str:
    """The findings section of a report."""
    lines = ["| finding | reproduced | measured |", "|---|---|---|"]
    for v in verdicts:
        shown = {True: "yes", False: "no", None: "not measured"}[v.reproduced]
        lines.append(f"| {v.claim} | {shown} | {v.evidence} |")
    if ordering is not None:
        measured, tau = ordering
        shown = "n/a" if math.isnan(tau) else f"{tau:+.2f}"
        lines += ["", f"Measured ordering (best first): {', '.join(measured)}; "
                  f"Kendall's tau with the paper's ordering: {shown}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def intervals_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A table of ``Interval`` values as estimate / low / high columns (for CSV)."""
    out = {}
    for column in table.columns:
        cells: pd.Series = table[column]
        for part in ("estimate", "low", "high"):
            out[f"{column} {part}"] = [
                getattr(x, part) if isinstance(x, Interval) else math.nan for x in cells
            ]
    return pd.DataFrame(out, index=table.index)
