"""The stage graph end to end: shared stages, sweeps that never redo work, an honest lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from msl_ablate.commands import status as status_command
from msl_ablate.commands import train as train_command
from msl_ablate.commands.train import run_train
from msl_ablate.experiment import stages
from msl_ablate.experiment.keys import stage_keys
from msl_ablate.results import store
from msl_ablate.training.checkpointing import checkpoint_step

SCRIPT = str(Path(sys.executable).parent / "msl-ablate")
FIG5_CELLS = "strategy=vfrozen_lmfull,vfrozen_lmlora"


@pytest.fixture
def fits(monkeypatch) -> list[str]:
    """The name of every stage fit in this process, in order."""
    calls: list[str] = []
    real = stages.fit_stage

    def counting(cfg, vlm, stage, *args, **kwargs):
        calls.append(stage.name)
        return real(cfg, vlm, stage, *args, **kwargs)

    monkeypatch.setattr(stages, "fit_stage", counting)
    return calls


def _client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlruns/mlflow.db")


def _runs(root: Path, kind: str | None = None) -> list:
    client = _client(root)
    runs = client.search_runs([client.get_experiment_by_name("msl-ablate").experiment_id])
    return [r for r in runs if kind is None or r.data.tags.get("kind") == kind]


def _store(root: Path):
    return store.load(root / "results" / store.STORE_FILE)


def test_a_figure5_sweep_shares_stage_one_and_a_rerun_does_nothing(
    tmp_path, tiny_overrides, fits, capsys
):
    sweep = ["-m", *tiny_overrides, f"paths.root={tmp_path}", "eval.benchmarks=[pope,gqa]",
             FIG5_CELLS]  # fmt: skip
    train_command.main(sweep)
    assert fits == ["align", "finetune", "finetune"]  # stage 1 once for both cells
    trainings = _runs(tmp_path, "training")
    assert len(trainings) == 2 and {r.info.status for r in trainings} == {"FINISHED"}
    align_keys = {r.data.tags["stage_key.align"] for r in trainings}
    assert len(align_keys) == 1
    assert sorted(r.data.tags["stage_reused.align"] for r in trainings) == ["false", "true"]
    # The reusing run holds stage 1's curve too (copied from the run that trained it).
    for run in trainings:
        assert "align/train/loss" in run.data.metrics, run.data.tags["axis.strategy"]
    assert len(list((tmp_path / "outputs" / "stages").glob("*/stage.json"))) == 3
    n_runs, n_rows = len(_runs(tmp_path)), len(_store(tmp_path))
    assert n_runs == 2 + 2 * 3  # 2 trainings, 3 evaluations each (held-out, pope, gqa)

    train_command.main(sweep)  # the same sweep again: nothing is trained, run or recorded
    assert fits == ["align", "finetune", "finetune"]
    assert len(_runs(tmp_path)) == n_runs and len(_store(tmp_path)) == n_rows
    out = capsys.readouterr()
    assert (out.out + out.err).count("; skipped") == 2  # says what it skipped, per job
    assert status_command.main(sweep[1:]) == 0
    out = capsys.readouterr().out
    assert "study adhoc: 2 job(s): 2 done, 0 running, 0 failed, 0 todo" in out
    assert out.count("shared by 2 jobs") == 2 and out.count("reused from run") == 1
    assert out.count("3/3 recorded") == 2 and f"stages/{align_keys.pop()}" in out

    # A new evaluation protocol: nothing trained, one new evaluation per cell.
    (tmp_path / "results" / store.STORE_FILE).write_bytes(b"\x00\xff not a store")  # damaged
    train_command.main([*sweep, "eval.max_samples=4"])
    assert fits == ["align", "finetune", "finetune"]
    new = [r for r in _runs(tmp_path) if r.info.run_id not in {x.info.run_id for x in trainings}]
    assert len(_runs(tmp_path)) == n_runs + 2
    assert sorted(r.data.tags["benchmark"] for r in new if r.data.params.get(
        "protocol.max_questions") == "4") == ["eval", "eval"]  # fmt: skip
    df = _store(tmp_path)  # rebuilt from MLflow before the new rows were added
    assert len(df) > n_rows and not df.duplicated(["evaluation_key", "metric"]).any()
    assert df.groupby(["training_key", "benchmark"])["protocol"].nunique().max() == 2


def test_a_cell_shared_by_two_studies_counts_for_both(tmp_path, tiny_overrides, fits, capsys):
    """fig5_optim's vfrozen_lmfull cell is fig2_lm's Phi-1.5 cell (align_then_finetune under
    the figure's name): the second study trains nothing but its table must hold the cell, under
    its own name, in the store and in a store rebuilt from MLflow."""
    job = [*tiny_overrides, f"paths.root={tmp_path}", "eval.benchmarks=[pope]"]
    train_command.main([*job, "study=fig2_lm-mini"])
    assert fits == ["align", "finetune"]
    before = _store(tmp_path)
    assert set(before["study"]) == {"fig2_lm-mini"}

    fig5 = [*job, "study=fig5_optim-mini", "strategy=vfrozen_lmfull"]
    assert status_command.main(fig5) == 0
    out = capsys.readouterr().out
    assert "0 done, 0 running, 0 failed, 1 todo" in out
    assert "with fig2_lm-mini; not yet in fig5_optim-mini's results" in out

    train_command.main(fig5)
    assert fits == ["align", "finetune"]  # nothing trained again
    assert "store rows added for study fig5_optim-mini" in capsys.readouterr().out
    (training,) = _runs(tmp_path, "training")
    assert training.data.tags["study.fig2_lm-mini"] == "true"
    assert training.data.tags["study.fig5_optim-mini"] == "true"
    df = _store(tmp_path)
    first, second = (df[df["study"] == s].drop(columns="study").reset_index(drop=True)
                     for s in ("fig2_lm-mini", "fig5_optim-mini"))  # fmt: skip
    assert len(first) == len(before) > 0
    assert set(first["strategy"]) == {"align_then_finetune"}
    assert set(second["strategy"]) == {"vfrozen_lmfull"}  # the cell as fig5 names it
    # the same evaluations, once per study
    pd.testing.assert_frame_equal(first.drop(columns="strategy"), second.drop(columns="strategy"))
    assert status_command.main(fig5) == 0
    assert "1 done, 0 running, 0 failed, 0 todo" in capsys.readouterr().out

    train_command.main(fig5)  # again: nothing added twice
    assert len(_store(tmp_path)) == len(df)
    rebuilt = store.rebuild(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "msl-ablate",
                            tmp_path / "rebuilt.parquet")  # fmt: skip
    key = ["study", "evaluation_key", "metric"]
    pd.testing.assert_frame_equal(rebuilt.sort_values(key).reset_index(drop=True),
                                  df.sort_values(key).reset_index(drop=True))  # fmt: skip


def test_a_non_finite_loss_fails_the_run_with_step_and_reason(make_cfg, monkeypatch):
    from msl_ablate.models.vlm import VisionLanguageModel
    from msl_ablate.utils.errors import NonFiniteLossError

    real = VisionLanguageModel.forward

    def nan_at_second_step(self, **batch):
        out = real(self, **batch)
        nan_at_second_step.calls += 1
        if nan_at_second_step.calls == 2:
            out.loss = out.loss * float("nan")
        return out

    nan_at_second_step.calls = 0
    monkeypatch.setattr(VisionLanguageModel, "forward", nan_at_second_step)
    cfg = make_cfg("eval.benchmarks=[]")
    with pytest.raises(NonFiniteLossError, match="stage align: loss is nan at step 1"):
        run_train(cfg)
    (run,) = _runs(Path(cfg.paths.root), "training")
    assert run.info.status == "FAILED"
    assert "loss is nan at step 1" in run.data.tags["failure"]
    assert run.data.tags["stage"] == "align"
    key = run.data.tags["stage_key.align"]
    assert not (Path(cfg.paths.output_dir) / "stages" / key / "stage.json").exists()


def _launch(root: Path, overrides: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [SCRIPT, "train", f"paths.root={root}", *overrides], cwd=root, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sigkill_in_stage_two_then_relaunch_continues_the_same_run(
    tmp_path, tiny_overrides, make_cfg
):
    overrides = [*tiny_overrides, "eval.benchmarks=[pope]", "strategy.stages.finetune.max_steps=24",
                 "checkpoint.every_steps=4", "checkpoint.every_minutes=null"]  # fmt: skip
    cfg = make_cfg(*overrides[len(tiny_overrides) :])
    keys = stage_keys(cfg)
    last = tmp_path / "outputs" / "stages" / keys["finetune"] / "checkpoints" / "last.ckpt"
    proc = _launch(tmp_path, overrides)
    deadline = time.monotonic() + 240
    while not (last.is_file() and checkpoint_step(last) >= 8):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "stage 2 never wrote a checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = _runs(tmp_path, "training")
    assert killed.info.status == "RUNNING"  # what a SIGKILL leaves behind

    # Another training launched on the same outputs sees that run's process is gone.
    other = run_train(make_cfg(*overrides[len(tiny_overrides) :], "seed=1",
                               "strategy.stages.finetune.max_steps=2"))  # fmt: skip
    stale = _client(tmp_path).get_run(killed.info.run_id)
    assert stale.info.status == "KILLED" and "is gone" in stale.data.tags["failure"]

    result = run_train(cfg)  # the relaunch
    runs = [r for r in _runs(tmp_path, "training") if r.info.run_id != other["mlflow_run_id"]]
    assert [r.info.run_id for r in runs] == [killed.info.run_id] == [result["mlflow_run_id"]]
    assert "failure" not in runs[0].data.tags
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["resumes"] == "1"
    assert result["stages"] == {"align": "reused", "finetune": "trained"}
    assert not [r for r in _runs(tmp_path) if r.info.status == "RUNNING"]
    history = _client(tmp_path).get_metric_history(killed.info.run_id, "finetune/train/loss")
    steps = sorted(m.step for m in history)  # the steps redone after the checkpoint not again
    assert steps == list(range(steps[0], steps[0] + 24))  # one continuous curve, each step once
    df = _store(tmp_path)
    assert not df.duplicated(["evaluation_key", "metric"]).any()
    assert set(df["training_run_id"]) == {killed.info.run_id, other["mlflow_run_id"]}


def test_two_processes_that_need_the_same_stage_one_train_it_once(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "eval.benchmarks=[]", "strategy.stages.align.max_steps=12"]
    procs = [_launch(tmp_path, [*overrides, f"strategy={s}"])
             for s in ("vfrozen_lmfull", "vfrozen_lmlora")]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    trainings = _runs(tmp_path, "training")
    assert len(trainings) == 2 and {r.info.status for r in trainings} == {"FINISHED"}
    (align,) = {r.data.tags["stage_key.align"] for r in trainings}
    folders = [p for p in (tmp_path / "outputs" / "stages").iterdir() if p.is_dir()]
    assert len(folders) == 3 == len([p for p in folders if (p / "stage.json").is_file()])
    assert sorted(r.data.tags["stage_reused.align"] for r in trainings) == ["false", "true"]
    reused = [f"Stage align ({align}) is finished" in out for out in outputs]
    assert sorted(reused) == [False, True], outputs  # one trained it, the other loaded it
