"""End to end: `msl-ablate evaluate` rebuilds a finished LoRA run and benchmarks it."""

from __future__ import annotations

import re
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


def test_evaluate_rebuilds_the_run_and_logs_benchmarks(trained, capsys):
    cfg, result = trained
    run_dir = Path(cfg.paths.output_dir) / "runs" / result["run_key"]
    assert (run_dir / "config.yaml").is_file()
    trained_answers = (run_dir / "eval" / "pope" / "answers.jsonl").read_text()
    root = f"paths.root={cfg.paths.root}"

    assert main(["evaluate", "--run", result["run_key"], "--benchmarks", "pope,mmbench", root]) == 0
    # By MLflow run id too, with an eval override applied over the run's config.
    run_id = result["mlflow_run_id"]
    assert (
        main(["evaluate", "--run", run_id, "--benchmarks", "gqa", root, "eval.batch_size=3"]) == 0
    )

    # The rebuilt model answers exactly as the model did at the end of training.
    assert (run_dir / "eval" / "pope" / "answers.jsonl").read_text() == trained_answers
    out = capsys.readouterr().out
    assert re.search(r"mmbench +circular_accuracy +[\d.]+ +4 +0\n", out)  # 1 question x 4 copies
    metrics = MlflowClient(tracking_uri=cfg.tracking.tracking_uri).get_run(run_id).data.metrics
    for key in ("finetune/pope/f1", "finetune/mmbench/circular_accuracy", "finetune/gqa/accuracy"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["finetune/mmbench/n_missing"] == 0
    df = store.load(Path(cfg.paths.results_dir) / store.STORE_FILE)
    row = df.set_index("run_key").loc[result["run_key"]]
    assert row["mlflow_run_id"] == run_id
    assert row["finetune/gqa/accuracy"] == pytest.approx(metrics["finetune/gqa/accuracy"])
    assert row["finetune/eval/exact_match"] == pytest.approx(metrics["finetune/eval/exact_match"])
    assert "align/train/loss" not in df.columns  # step metrics stay in MLflow
    assert "POPE" in store.summary(df) and "MMBench" in store.summary(df)


def test_bad_run_is_a_clear_error(capsys, tmp_path):
    assert main(["evaluate", "--run", "nosuchrun", f"paths.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "--run 'nosuchrun' is neither a run key" in err and "Traceback" not in err
    assert not (tmp_path / "mlruns").exists()  # looking a run up creates no MLflow store
    assert main(["evaluate", "--run", "x", "vision=tiny_siglip", f"paths.root={tmp_path}"]) == 2
    assert "override 'vision=tiny_siglip': evaluate takes only" in capsys.readouterr().err
    assert main(["evaluate"]) == 2  # --run is required
