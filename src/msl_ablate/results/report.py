"""Write a study's report: table (Markdown, LaTeX, CSV), paired differences, figure (PNG, PDF),
the paper's findings tested, and, for factorial studies, main effects and interaction.

Everything is computed from the store and the evaluations' per-unit outcomes; nothing trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from msl_ablate.results.costs import CostLoader, cost_table
from msl_ablate.results.figures import draw, radar
from msl_ablate.results.findings import (
    Verdict,
    check_finding,
    findings_markdown,
    intervals_frame,
    ordering_agreement,
)
from msl_ablate.results.published import PUBLISHED, SOURCE
from msl_ablate.results.statistics import Interval, factorial_effects
from msl_ablate.results.study import Study, UnitLoader
from msl_ablate.utils.files import atomic_path


@dataclass
class ReportFiles:
    """What ``write_report`` wrote, and the findings as they came out."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


def _text(cell: Any) -> str:
    if isinstance(cell, Interval):
        if math.isnan(cell.low):
            return f"{cell.estimate:.1f}"
        return f"{cell.estimate:.1f} ± {(cell.high - cell.low) / 2:.1f}"
    return ""


def difference_text(cell: Any) -> str:
    """A paired difference as ``+1.2 [-0.3, +2.7]``, `` *`` when its interval excludes zero."""
    if not isinstance(cell, Interval):
        return ""
    mark = " *" if cell.excludes_zero else ""
    return f"{cell.estimate:+.1f} [{cell.low:+.1f}, {cell.high:+.1f}]{mark}"


def measured_table(study: Study, published: dict[str, str] | None = None) -> pd.DataFrame:
    """The study's table as text: one row per cell (mean ± half-width of the 95% interval over
    seeds), the number of seeds, a chance row, and published rows where given."""
    table = study.intervals().map(_text)
    table.insert(0, "seeds", pd.Series(study.seeds()))
    extra = {"(chance)": {c: f"{study.chance.get(c):.1f}" for c in study.columns
                          if c in study.chance and not math.isnan(study.chance.get(c))}}  # fmt: skip
    for cell, row in (published or {}).items():
        if row in PUBLISHED:
            extra[f"{cell} (published: {row})"] = {
                c: f"{v:g}" for c, v in PUBLISHED[row].items() if c in study.columns
            }
    rows = pd.DataFrame.from_dict(extra, orient="index").reindex(columns=table.columns)
    table = pd.concat([table, rows.fillna("")])
    table.index.name = study.axis
    return table


def _write(path: Path, text: str, files: list[Path]) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    files.append(path)


def _factor_frame(study: Study, factors: dict[str, dict[str, str]], column: str) -> pd.DataFrame:
    rows = study.values[study.values["column"] == column]
    frame = rows[["cell", "seed", "value"]].copy()
    for factor, levels in factors.items():
        frame[factor] = frame["cell"].map(levels)
    return frame.dropna()


def write_report(
    study: Study,
    report: Any,
    units: UnitLoader,
    out_dir: Path,
    *,
    scale: str,
    aliases: dict[str, str] | None = None,
    n_resamples: int = 2000,
    costs: CostLoader | None = None,
) -> ReportFiles:
    """Write every file of a study's report into ``out_dir``.

    Args:
        study: The study (``results.study.load_study``).
        report: Its ``ReportConfig`` (title, axis, reference, findings...).
        units: Per-unit outcomes loader (paired differences).
        out_dir: Folder for the files (created).
        scale: ``paper`` adds the published rows; ``mini`` tests the findings.
        aliases: Other names of cells (``high`` -> ``128``) the findings may use.
        n_resamples: Bootstrap resamples per difference.
        costs: Training cost loader (``results.costs.training_costs``); None: no cost table.
    """
    out = ReportFiles(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    published = dict(report.published) if scale == "paper" else None
    table = measured_table(study, published)
    sections = [f"# {report.title}\n", f"Study `{study.name}` (scale {scale}): cells are values "
                f"of `{study.axis}`; each cell is the mean over its seeds ± half the 95% t "
                "interval.\n", table.to_markdown(), ""]  # fmt: skip
    with atomic_path(out_dir / "table.csv") as tmp:
        intervals_frame(study.intervals()).join(pd.Series(study.seeds(), name="seeds")).to_csv(tmp)
    out.files.append(out_dir / "table.csv")
    _write(out_dir / "table.md", table.to_markdown() + "\n", out.files)
    _write(out_dir / "table.tex", table.to_latex(escape=True), out.files)
    if published:
        sections.append(f"Published rows: {SOURCE}, as reported (their protocol, not ours).\n")

    bootstrap = {"n_resamples": n_resamples}
    if report.reference is not None and len(study.cells) > 1:
        reference = (aliases or {}).get(report.reference, report.reference)
        diffs = study.differences(reference, units, **bootstrap).map(difference_text)
        diffs.index.name = f"minus {reference}"
        _write(out_dir / "differences.md", diffs.to_markdown() + "\n", out.files)
        sections += [f"## Differences from {reference}\n",
                     "Paired bootstrap over questions (95% percentile interval); * marks a "
                     "difference larger than its uncertainty.\n", diffs.to_markdown(), ""]  # fmt: skip

    if report.factors:
        effects = []
        for column in study.columns:
            frame = _factor_frame(study, dict(report.factors), column)
            if (frame["seed"].nunique() < 2 or frame["value"].nunique() < 2
                    or any(frame[f].nunique() < 2 for f in report.factors)):  # fmt: skip
                continue  # no replicates, a constant result or a one-level factor: no test
            anova = factorial_effects(frame, list(report.factors))
            effects.append(anova["PR(>F)"].rename(column))
        if effects:
            table_p = pd.concat(effects, axis=1).drop(index="Residual").map(lambda p: f"{p:.3f}")
            table_p.index.name = "effect (p-value)"
            _write(out_dir / "effects.md", table_p.to_markdown() + "\n", out.files)
            sections += ["## Main effects and interaction\n",
                         "Two-way ANOVA (type II) over seeds: p-values per benchmark.\n",
                         table_p.to_markdown(), ""]  # fmt: skip

    if scale != "paper" and (report.findings or report.paper_order):
        for f in report.findings:
            out.verdicts.append(
                check_finding(
                    study, f.claim, f.test, f.cells, f.benchmarks, units, aliases, **bootstrap
                )  # fmt: skip
            )
        ordering = ordering_agreement(study, report.paper_order) if report.paper_order else None
        text = findings_markdown(out.verdicts, ordering)
        _write(out_dir / "findings.md", text, out.files)
        sections += ["## The paper's findings in miniature\n", text]

    cost = cost_table(study, costs) if costs is not None else pd.DataFrame()
    if not cost.empty:
        shown = cost.map(lambda v: f"{v:,.1f}")
        _write(out_dir / "cost.md", shown.to_markdown(disable_numparse=True) + "\n", out.files)
        sections += ["## Training cost\n",
                     "Per stage, mean over seeds: tokens/s and samples/s over its steps (real "
                     "tokens, padding not counted), the steps' wall time, peak GPU memory.\n",
                     shown.to_markdown(disable_numparse=True), ""]  # fmt: skip

    out.files += draw(study, report.plot, report.title, out_dir / "figure")
    sections.append("![figure](figure.png)\n")
    rows, dashed = radar_rows(study.means(), study.chance, published)
    if len(radar_columns(study)) >= 3:
        out.files += radar(rows, radar_columns(study), report.title, out_dir / "radar",
                           dashed=dashed)  # fmt: skip
        sections.append("![radar](radar.png)\n")
    _write(out_dir / "report.md", "\n".join(sections), out.files)
    return out


def radar_columns(study: Study) -> list[str]:
    """The benchmarks a radar spans: the study's, without the held-out split's exact match."""
    return [c for c in study.columns if c != "exact_match"]


def radar_rows(
    means: pd.DataFrame, chance: pd.Series, published: dict[str, str] | None
) -> tuple[dict[str, dict[str, float]], tuple[str, ...]]:
    """Rows of a radar: each row of ``means``, then chance and published rows (drawn dashed)."""
    rows = {str(label): row.dropna().to_dict() for label, row in means.iterrows()}
    dashed = ["(chance)"]
    rows["(chance)"] = chance.dropna().to_dict()
    for name in (published or {}).values():
        if name in PUBLISHED:
            rows[f"{name} (published)"] = dict(PUBLISHED[name])
            dashed.append(f"{name} (published)")
    return rows, tuple(dashed)


def write_overview(studies: list[Study], scale: str, out_dir: Path) -> list[Path]:
    """The overview radar (the paper's Figure 1): the best cell of each study by mean rank,
    with chance, and at scale ``paper`` the published Mipha rows; nothing below 3 benchmarks."""
    best = pd.DataFrame(
        [s.means().loc[s.mean_ranks().index[0]].rename(f"{s.name}: {s.mean_ranks().index[0]}")
         for s in studies]
    )  # fmt: skip
    columns = [c for c in best.columns if c != "exact_match"]
    if len(columns) < 3:
        return []
    chance = pd.concat([s.chance for s in studies]).groupby(level=0).first()
    published = {name: name for name in PUBLISHED} if scale == "paper" else None
    rows, dashed = radar_rows(best[columns], chance, published)
    return radar(rows, columns, f"Overview at scale {scale}: the best cell of each study",
                 out_dir / "radar", dashed=dashed)  # fmt: skip
