"""Jobs of one sweep side by side on one machine (hydra-joblib-launcher, as `make paper-mini`
runs them): they start together on a fresh MLflow store, share one generated dataset and one
results store, and every one finishes with its rows."""

from __future__ import annotations

import collections
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient


def test_four_jobs_at_once_on_a_fresh_store_all_finish(cli, tmp_path: Path, tiny_overrides):
    jobs = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "num_threads=1"]
    sweep = [*tiny_overrides, "data.generator.seed=11", "eval.benchmarks=[pope]", "seed=0,1,2,3"]

    out = cli(["train", "-m", *jobs, *sweep], cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "is launching 4 jobs" in out.stderr + out.stdout
    store = pd.read_parquet(tmp_path / "results" / "store.parquet")
    assert store.groupby("seed")["training_key"].nunique().to_dict() == {0: 1, 1: 1, 2: 1, 3: 1}
    assert set(store["benchmark"]) == {"eval", "pope"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kinds = collections.Counter((r.data.tags.get("kind"), r.info.status) for r in runs)
    assert kinds == {("training", "FINISHED"): 4, ("evaluation", "FINISHED"): 8}
