"""A sweep submitted to a real SLURM through the launcher config (conf/hydra/launcher/slurm.yaml,
hydra-submitit-launcher): both jobs run as a SLURM job array and finish in MLflow and the store."""

from __future__ import annotations

import collections
import re

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slurm


def test_a_two_job_sweep_through_slurm_finishes_both(cli, local_slurm, tmp_path, tiny_overrides):
    sweep = [*tiny_overrides, "eval.benchmarks=[pope]", "num_threads=1", "seed=0,1"]

    out = cli(["train", "-m", "hydra/launcher=slurm", *sweep], cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    folders = (tmp_path / "outputs" / "hydra" / "multirun").glob("*/*/.submitit/*")
    submitted = sorted(
        p.name for p in folders if re.fullmatch(r"\d+_\d+", p.name)
    )  # <array>_<task>
    array_ids = {name.split("_")[0] for name in submitted}
    assert len(submitted) == 2 and len(array_ids) == 1, submitted  # one array of two tasks
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kinds = collections.Counter((r.data.tags.get("kind"), r.info.status) for r in runs)
    assert kinds == {("training", "FINISHED"): 2, ("evaluation", "FINISHED"): 4}
    store = pd.read_parquet(tmp_path / "results" / "store.parquet")
    assert store.groupby("seed")["training_key"].nunique().to_dict() == {0: 1, 1: 1}
