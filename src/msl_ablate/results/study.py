"""One study's comparison, from the store alone: its cells, each benchmark's headline per seed
with an interval over seeds, and paired differences against a reference cell.

A *cell* is one value of the study's axis (an LM, an encoder, a strategy, an image size); its
runs are the seeds. Only the rows of the named study are read, so studies never mix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from msl_ablate.evaluation.scoring.benchmarks import HEADLINES_FROM_UNITS
from msl_ablate.results.statistics import (
    Interval,
    align_units,
    paired_bootstrap,
    seed_interval,
)
from msl_ablate.results.store import baseline_row, headline_rows, ordered_columns
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


class StudyError(ValueError):
    """The store cannot give this study's comparison (no rows, unknown axis or cell)."""


# Loads one evaluation run's per-unit outcomes (``results.units.unit_table`` bound to a URI).
UnitLoader = Callable[[str], pd.DataFrame]


@dataclass
class Study:
    """A study's headline values: ``values`` has one row per (cell, seed, column).

    Attributes:
        name: The study (the store's ``study`` column).
        axis: The store column whose values are the cells.
        cells: The cells in display order.
        columns: The headline columns (``exact_match``, ``VQAv2``, ...) in the paper's order.
        values: Columns ``cell``, ``seed``, ``column``, ``scorer``, ``value``,
            ``evaluation_run_id``, ``training_run_id``.
        chance: Uniform guessing's headline per column (the floor every cell should clear).
    """

    name: str
    axis: str
    cells: list[str]
    columns: list[str]
    values: pd.DataFrame
    chance: pd.Series

    def intervals(self) -> pd.DataFrame:
        """Cell x column: mean over seeds with its t interval (``Interval``)."""
        grouped = self.values.groupby(["cell", "column"])["value"]
        table = grouped.apply(lambda v: seed_interval(list(v))).unstack("column")
        return table.reindex(index=self.cells, columns=self.columns)

    def seeds(self) -> dict[str, int]:
        return {c: self.values.loc[self.values["cell"] == c, "seed"].nunique() for c in self.cells}

    def difference(
        self, cell_a: str, cell_b: str, column: str, units: UnitLoader, **bootstrap
    ) -> Interval:
        """``cell_b - cell_a`` on one column, paired bootstrap over its questions."""
        rows = self.values[self.values["column"] == column]
        tables = []
        for cell in (cell_a, cell_b):
            runs = rows[rows["cell"] == cell].sort_values("seed")["evaluation_run_id"]
            if runs.empty:
                raise StudyError(f"study {self.name}: no {column} result for {cell!r}")
            tables.append([units(run) for run in runs])
        scorer = str(rows["scorer"].iloc[0])
        a, b = align_units(tables)
        return paired_bootstrap(a, b, HEADLINES_FROM_UNITS[scorer], **bootstrap)

    def differences(self, reference: str, units: UnitLoader, **bootstrap) -> pd.DataFrame:
        """Cell x column: each other cell minus ``reference`` (``Interval``)."""
        if reference not in self.cells:
            raise StudyError(
                f"study {self.name}: reference {reference!r} is not a cell (cells: {self.cells})"
            )
        others = [c for c in self.cells if c != reference]
        table = pd.DataFrame(index=others, columns=self.columns, dtype=object)
        for cell in others:
            for column in self.columns:
                table.loc[cell, column] = self.difference(
                    reference, cell, column, units, **bootstrap
                )
        return table

    def means(self) -> pd.DataFrame:
        """Cell x column: the mean over seeds."""
        means = self.values.groupby(["cell", "column"])["value"].mean().unstack("column")
        return means.reindex(index=self.cells, columns=self.columns)

    def mean_ranks(self) -> pd.Series:
        """Each cell's rank (1 = best) averaged over the columns: the overall ordering."""
        return self.means().rank(ascending=False).mean(axis=1).sort_values()


def load_study(store: pd.DataFrame, name: str, axis: str, order: Sequence[str] = ()) -> Study:
    """The study ``name`` of the store, its cells being the values of ``axis``.

    Args:
        store: The results store (``store.load``).
        name: The study (``study`` column).
        axis: A column of the store that varies between the study's trainings.
        order: Cells to show first, in this order (the rest follow, sorted).

    Raises:
        StudyError: No rows of the study, or an unknown axis.
    """
    df = store[store["study"] == name]
    if df.empty:
        known = sorted(store["study"].dropna().unique())
        raise StudyError(f"no results of study {name!r} in the store (studies: {known})")
    if axis not in df.columns:
        raise StudyError(f"study {name}: unknown axis {axis!r} (store columns: {list(df.columns)})")
    rows = headline_rows(df)
    rows = rows[rows["metric"] != "majority_baseline"]  # a baseline beside the held-out score
    rows = _one_training_per_seed(rows.assign(cell=rows[axis].map(_cell_name)), name)
    if "training_run_id" not in rows:  # stores written before the column: none to look up
        rows = rows.assign(training_run_id=None)
    values = rows[["cell", "seed", "column", "scorer", "value", "evaluation_run_id",
                   "training_run_id"]]  # fmt: skip
    found = list(dict.fromkeys(values["cell"]))
    first = [str(c) for c in order if str(c) in found]
    rest = sorted((c for c in found if c not in first), key=_natural)
    return Study(
        name=name,
        axis=axis,
        cells=first + rest,
        columns=ordered_columns(set(values["column"])),
        values=values.reset_index(drop=True),
        chance=baseline_row(df, "chance"),
    )


def _one_training_per_seed(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """Keep the newest evaluation of each (cell, seed, column): a study re-run with other
    settings (budgets, data) under the same name must not pool old and new trainings."""
    rows = rows.sort_values("evaluated_at") if "evaluated_at" in rows else rows
    keep = rows.drop_duplicates(["cell", "seed", "column"], keep="last")
    dropped = sorted(set(rows["training_key"]) - set(keep["training_key"]))
    if dropped:
        log.warning("Study %s: older trainings of the same cell and seed left out: %s",
                    name, ", ".join(map(str, dropped)))  # fmt: skip
    return keep


def _cell_name(value) -> str:
    """Store values as cell names: ``128.0`` (a float column read back) -> ``128``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _natural(cell: str) -> tuple:
    return (0, int(cell), "") if cell.isdigit() else (1, 0, cell)
