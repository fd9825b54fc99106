"""Per-unit outcomes of the store's evaluations, read back from MLflow (the record).

Each evaluation run keeps ``units.jsonl`` among its artifacts (``evaluation/benchmark.py``):
one line per question (or MME image, MMBench circular group) with what its scorer needs. A
report reads them to resample questions in the paired bootstrap.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd

from msl_ablate.evaluation.scoring.metrics import UNITS_FILE


class MissingUnitsError(LookupError):
    """An evaluation run has no per-unit outcomes (evaluated before they were kept)."""


@lru_cache(maxsize=4096)
def unit_table(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The per-unit outcomes of one evaluation run (``unit`` column first).

    Raises:
        MissingUnitsError: The run has no ``units.jsonl`` artifact.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifacts(
                run_id=run_id, artifact_path=UNITS_FILE, dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError) as err:
            raise MissingUnitsError(
                f"evaluation run {run_id} in {tracking_uri} has no {UNITS_FILE} artifact "
                "(evaluated by an older msl-ablate: evaluate it again with `msl-ablate "
                "evaluate`)"
            ) from err
        table = pd.read_json(Path(path), lines=True, dtype=False)
    table["unit"] = table["unit"].astype(str)
    return table
