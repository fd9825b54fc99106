"""Two trainings at once against a real MLflow server with a PostgreSQL backend (tracking=server):
both finish with their params, metrics and artifacts, and the store rebuilds from the server."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from msl_ablate.results import store

SCRIPT = str(Path(sys.executable).parent / "msl-ablate")
pytestmark = pytest.mark.server


def test_two_trainings_at_once_against_the_server(mlflow_server, tmp_path, tiny_overrides):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MLFLOW_TRACKING_URI": mlflow_server}
    common = [*tiny_overrides, "tracking=server", "eval.benchmarks=[pope]", "num_threads=1",
              f"paths.root={tmp_path}"]  # fmt: skip
    jobs = [
        subprocess.Popen(
            [SCRIPT, "train", *common, f"seed={seed}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [job.communicate(timeout=900)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("msl-ablate")
    runs = client.search_runs([experiment.experiment_id])
    kinds = collections.Counter((r.data.tags.get("kind"), r.info.status) for r in runs)
    assert kinds == {("training", "FINISHED"): 2, ("evaluation", "FINISHED"): 4}
    for run in runs:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
        if run.data.tags["kind"] == "training":
            assert run.data.params["lm.name"] == "tiny_phi" and run.data.params["seed"] in "01"
            assert "finetune/train/loss" in run.data.metrics
            history = client.get_metric_history(run.info.run_id, "finetune/train/loss")
            assert len(history) == 2  # both logged steps
        else:
            benchmark = run.data.tags["benchmark"]
            assert any(m.startswith(f"finetune/{benchmark}/") for m in run.data.metrics)
            assert client.list_artifacts(run.info.run_id), run.data.tags["benchmark"]
    training_ids = {r.info.run_id for r in runs if r.data.tags["kind"] == "training"}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs
            if r.data.tags["kind"] == "evaluation"} == training_ids  # fmt: skip

    written = store.load(tmp_path / "results" / store.STORE_FILE)
    rebuilt = store.rebuild(mlflow_server, "msl-ablate", tmp_path / "rebuilt.parquet")
    key = ["training_key", "evaluation_key", "metric", "study"]
    assert written["seed"].nunique() == 2 and len(written) > 0
    pd.testing.assert_frame_equal(rebuilt.sort_values(key).reset_index(drop=True),
                                  written.sort_values(key).reset_index(drop=True))  # fmt: skip
