"""The results store: one row per (training, evaluation, metric, study), built only from MLflow runs.

A training that two studies share (the same cell asked by both) has its rows once per study, so
each study's table is read from its own rows alone (``study`` column).

Every row names the trained model (``training_key``, its axes, where its weights came from:
``vision_weights``/``lm_weights`` checkpoint ids and whether they were tiny twins), the
evaluation (``benchmark``, its ``protocol`` fingerprint, ``evaluation_key``), the metric and
its value. Results with different protocols are different rows, so they never share a table
cell. ``rebuild`` recreates the file from the FINISHED evaluation runs alone; a store file
that is missing or unreadable is rebuilt that way before anything is added to it.

The store is a Parquet file (typed columns, fast to read), written atomically with a CSV export
beside it (``store.csv``) for spreadsheets and ``grep``; the CSV is never read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from msl_ablate.evaluation.headline import HEADLINE_METRICS
from msl_ablate.tracking.mlflow_run import axis_value, studies_of
from msl_ablate.utils.files import atomic_path
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

STORE_FILE = "store.parquet"
CSV_EXPORT = "store.csv"  # written beside the store at every write
KEY_COLUMNS = ["training_key", "evaluation_key", "metric", "study"]
COLUMNS = [
    "training_key", "evaluation_key", "benchmark", "protocol", "metric", "value",
    "study", "seed", "vision", "lm", "projector", "strategy", "data",
    "stage", "scorer", "lm_family", "lm_tuning", "image_size",
    "vision_weights", "vision_twin", "lm_weights", "lm_twin",
    "training_run_id", "evaluation_run_id", "git_sha", "evaluated_at",
]  # fmt: skip
AXES = ["vision", "lm", "projector", "strategy", "data"]
HELDOUT_LABELS = {"exact_match": "exact_match", "majority_baseline": "majority"}


class StoreError(ValueError):
    """The store file cannot be read as a store (naming the file and the problem)."""


def rows_from_runs(evaluation: Any, training: Any) -> list[dict[str, Any]]:
    """The store rows of an evaluation run (``mlflow.entities.Run``) and its training run: one
    per metric and study of the training (``tracking.mlflow_run.studies_of``)."""
    ev, tr = evaluation.data.tags, training.data.tags
    params = training.data.params
    prefix = f"{ev['stage']}/{ev['benchmark']}/"
    common = {
        "training_key": ev["training_key"],
        "evaluation_key": ev["evaluation_key"],
        "benchmark": ev["benchmark"],
        "protocol": ev["protocol"],
        "seed": int(tr.get("seed", 0)),
        "stage": ev["stage"],
        "scorer": ev.get("scorer"),
        "lm_family": params.get("lm.family"),
        "lm_tuning": params.get("lm.tuning"),
        "image_size": int(params["vision.image_size"]) if "vision.image_size" in params else None,
        "vision_weights": tr.get("weights.vision"),
        "vision_twin": tr.get("twin.vision"),
        "lm_weights": tr.get("weights.lm"),
        "lm_twin": tr.get("twin.lm"),
        "training_run_id": training.info.run_id,
        "evaluation_run_id": evaluation.info.run_id,
        "git_sha": tr.get("git_sha"),
        "evaluated_at": pd.Timestamp(evaluation.info.start_time, unit="ms", tz="UTC").isoformat(),
    }
    return [
        {
            **common,
            **{axis: axis_value(tr, axis, study) for axis in AXES},
            "study": study,
            "metric": name.removeprefix(prefix),
            "value": value,
        }
        for study in studies_of(tr) or [None]
        for name, value in sorted(evaluation.data.metrics.items())
        if name.startswith(prefix)
    ]


def load(store_path: str | Path) -> pd.DataFrame:
    """The store as a DataFrame (empty, with its columns, if there is no file).

    Raises:
        StoreError: The file is not a readable store.
    """
    path = Path(store_path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise StoreError(f"results store {path} is unreadable: {err}") from err
    missing = [c for c in KEY_COLUMNS + ["value"] if c not in df.columns]
    if missing:
        raise StoreError(f"results store {path} lacks the columns {missing}")
    return df


def _write(df: pd.DataFrame, store_path: str | Path) -> None:
    df = df.reindex(columns=COLUMNS)
    df = df.sort_values(["study", "training_key", "benchmark", "protocol", "metric"],
                        kind="stable").reset_index(drop=True)  # fmt: skip
    for column in ("seed", "value", "image_size"):
        df[column] = pd.to_numeric(df[column])
    for column in set(COLUMNS) - {"seed", "value", "image_size"}:  # one type per column
        df[column] = df[column].map(lambda v: v if v is None or pd.isna(v) else str(v))
    with atomic_path(store_path) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(Path(store_path).with_name(CSV_EXPORT)) as tmp:
        df.to_csv(tmp, index=False)


def upsert(store_path: str | Path, rows: list[dict[str, Any]], tracker: Any = None) -> pd.DataFrame:
    """Add an evaluation's rows, replacing rows with the same keys (a re-run never duplicates).

    Args:
        store_path: The store file.
        rows: From ``rows_from_runs``.
        tracker: A ``tracking.mlflow_run.Tracker``: a missing or unreadable store file is
            first rebuilt from its FINISHED runs (with a warning), so no earlier row is lost.
    """
    path = Path(store_path)
    # Jobs of a parallel sweep finish together: one read-modify-write at a time loses no row.
    with hold(path.with_name(f".{path.name}.lock"), "the results store"):
        return _upsert_locked(path, pd.DataFrame(rows, columns=COLUMNS), tracker)


def _upsert_locked(path: Path, new: pd.DataFrame, tracker: Any) -> pd.DataFrame:
    keys = set(new["evaluation_key"])
    if tracker is not None and not path.is_file():  # first row, or the file was deleted
        df = rebuild(tracker.tracking_uri, tracker.experiment, path)
        if not set(df["evaluation_key"]) <= keys:
            log.warning("Results store %s was missing: rebuilt from MLflow %s (%d rows)",
                        path, tracker.tracking_uri, len(df))  # fmt: skip
    else:
        try:
            df = load(path)
        except StoreError as err:
            if tracker is None:
                raise
            log.warning("%s: rebuilding it from MLflow %s", err, tracker.tracking_uri)
            df = rebuild(tracker.tracking_uri, tracker.experiment, path)
    df = df[~df["evaluation_key"].isin(keys)]
    df = pd.concat([d for d in (df, new) if len(d)], ignore_index=True) if len(df) else new
    _write(df, path)
    return load(path)


def rebuild(tracking_uri: str, experiment: str, store_path: str | Path) -> pd.DataFrame:
    """Rebuild the store from the FINISHED evaluation runs and their training runs alone.

    Returns:
        The rebuilt store.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    rows: list[dict[str, Any]] = []
    if exp is not None:
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string="attributes.status = 'FINISHED' and tags.kind = 'evaluation'",
            order_by=["attributes.start_time ASC"],
            max_results=50_000,
        )
        trainings: dict[str, Any] = {}
        for run in runs:
            parent = run.data.tags.get("mlflow.parentRunId")
            if parent not in trainings:
                trainings[parent] = client.get_run(parent)
            rows += rows_from_runs(run, trainings[parent])
    df = pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(KEY_COLUMNS, keep="last")
    _write(df, store_path)
    return load(store_path)


def _label(scorer: str, benchmark: str, metric: str) -> str | None:
    """The table label of a headline metric, or None for any other metric."""
    if scorer == "exact_match":
        return HELDOUT_LABELS.get(metric) if benchmark == "eval" else (
            benchmark if metric == "exact_match" else None)  # fmt: skip
    headline = HEADLINE_METRICS.get(scorer)
    return headline[1] if headline is not None and headline[0] == metric else None


# The columns that name a trained model in the headline table.
TABLE_INDEX = ["training_key", "study", "seed", "vision", "lm", "projector", "strategy"]


# The blind baselines a benchmark records beside its headline (``<kind>_baseline/<headline>``),
# as the summary's last rows: uniform guessing, then the most frequent right answer.
BASELINES = {"chance": "(chance)", "majority": "(majority answer)"}


def _baseline_label(kind: str):
    """The labeller of one blind baseline's headline cells (``<kind>_baseline/<headline>``)."""

    def label(scorer: str, benchmark: str, metric: str) -> str | None:
        if scorer == "exact_match":
            held_out = benchmark == "eval" and metric == f"{kind}_baseline"
            return "exact_match" if held_out else None
        headline = HEADLINE_METRICS.get(scorer)
        if headline is None or metric != f"{kind}_baseline/{headline[0]}":
            return None
        return headline[1]

    return label


def _columns(df: pd.DataFrame, label_of) -> pd.DataFrame:
    """The rows that ``label_of`` labels, each with its table column (protocol-split)."""
    df = df.copy()
    df["label"] = [label_of(str(s), b, m) for s, b, m in zip(df["scorer"], df["benchmark"],
                                                              df["metric"], strict=True)]  # fmt: skip
    df = df[df["label"].notna()]
    several = df.groupby("label")["protocol"].nunique()
    df["column"] = [f"{lab}@{p}" if several[lab] > 1 else lab for lab, p in
                    zip(df["label"], df["protocol"], strict=True)]  # fmt: skip
    return df


def headline_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of headline metrics, each with its table ``label`` (``POPE``) and ``column``
    (the label, with ``@<protocol>`` when a benchmark was evaluated under several)."""
    return _columns(df, _label)


def ordered_columns(columns: set[str]) -> list[str]:
    """Table columns in the paper's order (held-out first, then VQAv2 ... MMBench)."""
    return _ordered(columns)


def _ordered(columns: set[str]) -> list[str]:
    labels = [*HELDOUT_LABELS.values(), *(label for _, label in HEADLINE_METRICS.values())]
    rank = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    return sorted(columns, key=lambda c: (rank.get(c.split("@")[0], len(rank)), c))


def headline_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model, one column per headline metric (``POPE``, ``GQA``...).

    A benchmark evaluated under several protocols gets one column per protocol
    (``POPE@1a2b3c4d``): results of different protocols never share a cell.
    """
    if df.empty:
        return pd.DataFrame()
    df = _columns(df, _label)
    index = TABLE_INDEX
    df[index] = df[index].fillna("")  # pandas drops rows whose index has a NaN
    table = df.pivot_table(index=index, columns="column", values="value", aggfunc="first")
    return table.reindex(columns=_ordered(set(df["column"]))).reset_index()


def baseline_row(df: pd.DataFrame, kind: str = "majority") -> pd.Series:
    """A blind baseline of each headline column: ``majority`` answers every question with the
    most frequent right answer (held-out: per question type, from the training split);
    ``chance`` guesses uniformly among its options or the benchmark's answers."""
    if df.empty:
        return pd.Series(dtype=float)
    df = _columns(df, _baseline_label(kind))
    return df.groupby("column")["value"].first().reindex(_ordered(set(df["column"])))


def summary(df: pd.DataFrame) -> str:
    """The store as a readable text table: one line per trained model, headline metrics, and
    last lines with the blind baselines of each benchmark: chance (uniform guessing) and the
    majority answer."""
    table = headline_table(df)
    if table.empty:
        return "(the results store is empty)"
    for kind, name in BASELINES.items():
        baseline = baseline_row(df, kind)
        if baseline.empty:
            continue
        row = {c: "" for c in TABLE_INDEX} | {"training_key": name}
        row |= {c: baseline.get(c, float("nan")) for c in table.columns if c not in TABLE_INDEX}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table.to_string(index=False, float_format=lambda x: f"{x:.1f}", na_rep="")
