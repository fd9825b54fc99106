"""End to end: `msl-ablate evaluate` rebuilds a finished LoRA run and benchmarks it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from msl_ablate.cli import main
from msl_ablate.commands.train import run_train
from msl_ablate.results import store


@pytest.fixture
def trained(make_cfg):
    # LoRA in stage 2, so evaluate must replay the wrapping to load the saved adapter keys.
    cfg = make_cfg("study=e2e", "strategy.stages.finetune.lm.mode=lora", "eval.benchmarks=[pope]")
    return cfg, run_train(cfg)


def _evaluations(cfg) -> list:
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags["kind"] == "evaluation"]  # fmt: skip


def test_evaluate_rebuilds_the_run_and_records_new_evaluations(trained, capsys):
    cfg, result = trained
    training = Path(cfg.paths.output_dir) / "trainings" / result["training_key"]
    assert (training / "config.yaml").is_file()
    pope = training / "evals" / f"pope-{result['evaluations']['pope']['protocol']}"
    trained_answers = (pope / "answers.jsonl").read_text()
    root = f"paths.root={cfg.paths.root}"
    before = {r.info.run_id for r in _evaluations(cfg)}

    # pope under the same protocol is recorded already: only mmbench is new.
    assert main(["evaluate", "--run", result["training_key"], "--benchmarks", "pope,mmbench",
                 root]) == 0  # fmt: skip
    new = [r for r in _evaluations(cfg) if r.info.run_id not in before]
    assert [r.data.tags["benchmark"] for r in new] == ["mmbench"]
    # By MLflow run id too, with an eval override: another protocol, so gqa and pope anew.
    run_id = result["mlflow_run_id"]
    assert main(["evaluate", "--run", run_id, "--benchmarks", "gqa,pope", root,
                 "eval.batch_size=3"]) == 0  # fmt: skip
    new = [r for r in _evaluations(cfg) if r.info.run_id not in before]
    assert sorted(r.data.tags["benchmark"] for r in new) == ["gqa", "mmbench", "pope"]
    assert {r.data.tags["mlflow.parentRunId"] for r in new} == {run_id}
    assert {r.data.params["protocol.batch_size"] for r in new} == {"3", "8"}

    # The rebuilt model answers exactly as the model did at the end of training.
    shutil.rmtree(pope)
    assert main(["evaluate", "--run", result["training_key"], "--benchmarks", "pope", root]) == 0
    assert (pope / "answers.jsonl").read_text() == trained_answers
    assert len(_evaluations(cfg)) == len(before) + 3  # its MLflow run existed: none added

    out = capsys.readouterr().out
    assert re.search(r"mmbench +circular_accuracy +[\d.]+ +4 +0\n", out)  # 1 question x 4 copies
    df = store.load(Path(cfg.paths.results_dir) / store.STORE_FILE)
    assert set(df["training_run_id"]) == {run_id}
    table = store.headline_table(df)
    assert {"MMBench", "GQA"} <= set(table.columns)
    assert len([c for c in table.columns if c.startswith("POPE@")]) == 2  # two protocols
    assert not df.duplicated(["evaluation_key", "metric"]).any()


def test_bad_run_is_a_clear_error(capsys, tmp_path):
    assert main(["evaluate", "--run", "nosuchrun", f"paths.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "--run 'nosuchrun' is neither a training key" in err and "Traceback" not in err
    assert not (tmp_path / "mlruns").exists()  # looking a run up creates no MLflow store
    assert main(["evaluate", "--run", "x", "vision=tiny_siglip", f"paths.root={tmp_path}"]) == 2
    assert "override 'vision=tiny_siglip': evaluate takes only" in capsys.readouterr().err
    assert main(["evaluate"]) == 2  # --run is required
