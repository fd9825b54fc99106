"""The results store: one row per run key, design choices and metrics as columns.

Rows are always built from MLflow runs (``row_from_run``), both when a run finishes and when
the whole store is rebuilt, so ``rebuild`` gives back exactly what the runs wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from msl_ablate.config.enums import STAGE_NAMES
from msl_ablate.evaluation.headline import HEADLINE_METRICS, headline_column
from msl_ablate.utils.files import atomic_path

STORE_FILE = "runs.csv"
ID_COLUMNS = [
    "run_key",
    "mlflow_run_id",
    "study",
    "seed",
    "vision",
    "lm",
    "projector",
    "strategy",
    "data",
]
INFO_COLUMNS = ["lm_family", "lm_tuning", "image_size", "git_sha", "start_time"]
# `<stage>/train/*` and `<stage>/val/*` are step curves and stay in MLflow; every other
# `<stage>/<split or benchmark>/<metric>` (held-out `eval`, benchmark metrics) is a result.
STEP_SPLITS = frozenset({"train", "val"})
HELDOUT = "eval"  # the default eval.split, whose exact match the summary shows first
EVAL_HEADLINE = {"exact_match": "exact_match", "majority_baseline": "majority"}
SCORER_ONLY = {"exact_match"}  # scorers that are not a benchmark of the paper's table


def is_result_metric(name: str) -> bool:
    """Whether a metric goes to the store: ``finetune/pope/f1`` yes, ``align/train/loss`` no."""
    parts = name.split("/")
    return len(parts) >= 3 and parts[1] not in STEP_SPLITS


def row_from_run(run: Any) -> dict[str, Any]:
    """A store row from an ``mlflow.entities.Run``."""
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    row: dict[str, Any] = {
        "run_key": tags["run_key"],
        "mlflow_run_id": run.info.run_id,
        "study": tags.get("study"),
        "seed": int(tags.get("seed", 0)),
        **{g: tags.get(f"axis.{g}") for g in ("vision", "lm", "projector", "strategy", "data")},
        "lm_family": params.get("lm.family"),
        "lm_tuning": params.get("lm.tuning"),
        "image_size": int(params["vision.image_size"]) if "vision.image_size" in params else None,
        "git_sha": tags.get("git_sha"),
        "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC").isoformat(),
    }
    row.update({k: v for k, v in sorted(metrics.items()) if is_result_metric(k)})
    return row


def load(store_path: str | Path) -> pd.DataFrame:
    """The store as a DataFrame (empty with the id columns if there is none yet)."""
    path = Path(store_path)
    if not path.is_file():
        return pd.DataFrame(columns=ID_COLUMNS + INFO_COLUMNS)
    return pd.read_csv(path)


def _write(df: pd.DataFrame, store_path: str | Path) -> None:
    metric_cols = sorted(c for c in df.columns if c not in ID_COLUMNS + INFO_COLUMNS)
    df = df.reindex(columns=ID_COLUMNS + INFO_COLUMNS + metric_cols)
    df = df.sort_values(["study", "run_key"], kind="stable").reset_index(drop=True)
    with atomic_path(store_path) as tmp:
        df.to_csv(tmp, index=False)


def upsert(store_path: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """Add a row, replacing any row with the same run key (a re-run never duplicates)."""
    df = load(store_path)
    df = df[df["run_key"] != row["run_key"]]
    df = pd.concat([df, pd.DataFrame([row])], ignore_index=True) if len(df) else pd.DataFrame([row])
    _write(df, store_path)
    return load(store_path)


def rebuild(tracking_uri: str, experiment: str, store_path: str | Path) -> pd.DataFrame:
    """Rebuild the store from the finished MLflow runs alone (newest run per run key).

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Experiment name.
        store_path: Where to write the store.

    Returns:
        The rebuilt store.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    rows: dict[str, dict[str, Any]] = {}
    if exp is not None:
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string="attributes.status = 'FINISHED' and tags.run_key != ''",
            order_by=["attributes.start_time ASC"],
            max_results=50_000,
        )
        for run in runs:
            rows[run.data.tags["run_key"]] = row_from_run(run)  # later runs replace earlier ones
    df = pd.DataFrame(list(rows.values())) if rows else load(Path("/nonexistent"))
    _write(df, store_path)
    return load(store_path)


def headline_columns(df: pd.DataFrame) -> dict[str, str]:
    """Headline metric columns -> short labels: exact match, majority, then the paper's table.

    The candidate names are generated (``<stage>/<benchmark>/<headline metric>``), never parsed
    from the columns; the held-out columns are those of the default ``eval.split``.
    """
    candidates: list[tuple[str, str, str]] = []  # (column, stage, label)
    for stage in STAGE_NAMES:
        candidates += [
            (f"{stage}/{HELDOUT}/{m}", stage, label) for m, label in EVAL_HEADLINE.items()
        ]
        candidates += [
            (headline_column(stage, bench), stage, label)
            for bench, (_, label) in HEADLINE_METRICS.items()
            if bench not in SCORER_ONLY
        ]
    present = [c for c in candidates if c[0] in df.columns]
    several = len({stage for _, stage, _ in present}) > 1  # then say which stage
    return {column: f"{stage}:{label}" if several else label for column, stage, label in present}


def summary(df: pd.DataFrame) -> str:
    """The store as a readable text table: design columns and the headline metrics."""
    if df.empty:
        return "(the results store is empty)"
    headline = headline_columns(df)
    cols = ["run_key", "study", "seed", "vision", "lm", "projector", "strategy", *headline]
    table = df[cols].rename(columns=headline)
    return table.to_string(index=False, float_format=lambda x: f"{x:.1f}")
