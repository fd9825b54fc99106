"""A run that crashes keeps what it wrote; the re-run resumes instead of retraining."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from msl_ablate.commands.train import run_train
from msl_ablate.experiment import run as experiment_run
from msl_ablate.experiment.layout import RunLayout
from msl_ablate.training.lit_module import VLMLitModule


def test_crash_after_training_is_failed_and_rerun_skips_finished_stages(make_cfg, monkeypatch):
    cfg = make_cfg("study=resume")

    statuses = []

    def crash(*args, **kwargs):
        client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
        exp = client.get_experiment_by_name(cfg.tracking.experiment)
        statuses.extend(r.info.status for r in client.search_runs([exp.experiment_id]))
        raise RuntimeError("evaluation crashed")

    with monkeypatch.context() as patch:
        patch.setattr(experiment_run, "evaluate_benchmarks", crash)
        with pytest.raises(RuntimeError, match="evaluation crashed"):
            run_train(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    (failed,) = client.search_runs([exp.experiment_id])
    # Both stages' fits are over but the run stays open until the experiment closes it, so a
    # process killed at this point never leaves a run that looks FINISHED.
    assert statuses == ["RUNNING"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["stage"] == "eval"  # where it stopped
    key = failed.data.tags["run_key"]
    layout = RunLayout.of(cfg.paths.output_dir, key)
    assert layout.stage_checkpoint("align").is_file()
    assert layout.stage_checkpoint("finetune").is_file()

    def no_training(self, batch, batch_idx):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(VLMLitModule, "training_step", no_training)
    result = run_train(make_cfg("study=resume"))
    assert result["run_key"] == key
    assert client.get_run(result["mlflow_run_id"]).info.status == "FINISHED"
