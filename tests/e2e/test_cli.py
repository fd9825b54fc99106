"""The ``msl-ablate`` console script as a user runs it: a sweep, and Lightning's DDP relaunch.

Both run the installed script in a subprocess, so ``sys.argv`` is the real one: Lightning's
DDP launcher starts rank 1 by re-running it, which fails if the CLI rewrote it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def test_a_sweep_runs_one_job_per_point_and_tracks_each(cli, tmp_path: Path, tiny_overrides):
    # The demo preset's read stage and its split, as small as the rest.
    demo = ["strategy.stages.read.max_steps=2", "data.generator.stage_splits.read.n=8"]
    sweep = [*tiny_overrides, *demo, "eval.benchmarks=[pope]", "projector=linear,mlp2x_gelu",
             "seed=0"]  # fmt: skip
    out = cli(
        ["train", "-m", "--config-dir", str(REPO / "sweeps"), "--config-name", "demo_projector",
         *sweep],
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("msl-ablate").experiment_id])
    trainings = [r for r in runs if r.data.tags["kind"] == "training"]
    assert sorted(r.data.tags["axis.projector"] for r in trainings) == ["linear", "mlp2x_gelu"]
    assert {r.data.tags["study"] for r in runs} == {"demo_projector"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    evaluations = [r for r in runs if r.data.tags["kind"] == "evaluation"]
    assert sorted(r.data.tags["benchmark"] for r in evaluations) == ["eval", "eval", "pope", "pope"]
    assert all("finetune/eval/exact_match" in r.data.metrics for r in evaluations
               if r.data.tags["benchmark"] == "eval")  # fmt: skip
    assert all("read/train/loss" in r.data.metrics for r in trainings)
    df = pd.read_csv(tmp_path / "results" / "store.csv")
    assert df.groupby("benchmark")["training_key"].nunique().to_dict() == {"eval": 2, "pope": 2}


def _finetuned(root: Path) -> dict[str, torch.Tensor]:
    (stage,) = [p.parent for p in (root / "outputs" / "stages").glob("*/stage.json")
                if json.loads(p.read_text())["stage"] == "finetune"]  # fmt: skip
    return load_file(stage / "trainable.safetensors")


def test_ddp_and_fsdp_on_two_processes_train_as_one_process_with_the_global_batch(
    cli, tmp_path: Path, tiny_overrides
):
    # Lightning's launcher re-runs the command for rank 1; each rank computes half of each
    # global batch of 8; rank 0 alone records (one MLflow run) and evaluates. FSDP (FSDP2 on
    # gloo) shards every parameter over the two ranks and gathers each block for its forward.
    common = [
        *tiny_overrides,
        "eval.benchmarks=[]",
        "strategy.stages.finetune.max_steps=3",
        "strategy.stages.finetune.lm.lr=1e-3",
    ]  # steps that move the weights by ~1e-3
    two = [f"strategy.stages.{s}.global_batch_size=8" for s in ("align", "finetune")]
    runs = {
        "one": [*common, *(f"strategy.stages.{s}.batch_size=8" for s in ("align", "finetune"))],
        "ddp": [*common, *two, "trainer.devices=2", "trainer.strategy=ddp"],
        "fsdp": [*common, *two, "trainer.devices=2", "trainer.strategy=fsdp"],
    }
    logs = {}
    for name, overrides in runs.items():
        (tmp_path / name).mkdir()
        out = cli(["train", *overrides], cwd=tmp_path / name)
        assert out.returncode == 0, out.stderr[-3000:]
        logs[name] = out.stdout + out.stderr
    assert "Starting with 2 processes" not in logs["one"]
    one_weights = _finetuned(tmp_path / "one")
    for name in ("ddp", "fsdp"):
        assert "Starting with 2 processes" in logs[name]
        weights = _finetuned(tmp_path / name)
        assert weights.keys() == one_weights.keys()
        for key, value in one_weights.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-5, msg=f"{name} {key}")
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/{name}/mlruns/mlflow.db")
        found = client.search_runs([client.get_experiment_by_name("msl-ablate").experiment_id])
        kinds = sorted((r.data.tags["kind"], r.info.status) for r in found)
        assert kinds == [("evaluation", "FINISHED"), ("training", "FINISHED")], name


@pytest.mark.slow
def test_torchrun_starts_the_train_module_on_two_processes(tmp_path: Path, tiny_overrides):
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "-m", "msl_ablate.commands.train", *tiny_overrides, "trainer.devices=2",
         "trainer.strategy=ddp", "tracking.enabled=false", "eval.benchmarks=[]",
         "eval.split=null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MEMBER: 2/2" in out.stdout + out.stderr
    stages = tmp_path / "outputs" / "stages"
    assert len(list(stages.glob("*/trainable.safetensors"))) == 2  # align and finetune
