"""A sweep submitted to a real SLURM through the launcher config (conf/hydra/launcher/slurm.yaml,
hydra-submitit-launcher): both jobs run as a SLURM job array and finish in MLflow and the store;
a job signalled as SLURM signals a preempted or timed-out one is requeued and resumes its stage."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slurm
SCRIPT = str(Path(sys.executable).parent / "msl-ablate")  # the console script, as a user runs it


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


def _job_ids(root: Path) -> list[str]:
    folders = (root / "outputs" / "hydra" / "multirun").glob("*/*/.submitit/*")
    return sorted(p.name for p in folders if re.fullmatch(r"\d+(_\d+)?", p.name))


def test_a_preempted_job_is_requeued_and_resumes_its_stage(local_slurm, tmp_path, tiny_overrides):
    steps = 150
    job = [*tiny_overrides, f"strategy.stages.finetune.max_steps={steps}", "checkpoint.every_steps=5",
           "eval.benchmarks=[pope]", "num_threads=1", "seed=0"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    launcher = subprocess.Popen([SCRIPT, "train", "-m", "hydra/launcher=slurm", *job], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
    submitted: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "outputs" / "stages").glob("*/checkpoints/last.ckpt")):
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the finetune stage never wrote a checkpoint"
            time.sleep(0.2)
        submitted = _job_ids(tmp_path)
        # What SLURM sends before a time limit or a preemption (submitit asks for USR2): submitit
        # requeues the job and exits; the job runs again from the start.
        subprocess.run(["scancel", "--signal=USR2", submitted[0].split("_")[0]], check=True)
        output, _ = launcher.communicate(timeout=900)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            subprocess.run(["scancel", *submitted], check=False)
    assert launcher.returncode == 0, output[-3000:]

    logs = "".join(p.read_text(errors="replace") for p in
                   (tmp_path / "outputs" / "hydra" / "multirun").glob("*/*/.submitit/*/*.*"))  # fmt: skip
    assert "Requeued job" in logs and "Stage finetune resumes from" in logs
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (training,) = [r for r in runs if r.data.tags.get("kind") == "training"]
    assert (training.info.status, training.data.tags["resumes"]) == ("FINISHED", "1")
    history = client.get_metric_history(training.info.run_id, "finetune/train/loss")
    logged = sorted(m.step for m in history)
    assert logged == list(range(logged[0], logged[0] + steps))  # every step once, none lost
    assert not [r for r in runs if r.info.status != "FINISHED"]
