"""A run that crashes keeps what it wrote; the re-run resumes instead of retraining."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from msl_ablate.commands.train import run_train
from msl_ablate.experiment import run as experiment_run
from msl_ablate.experiment.layout import StageLayout
from msl_ablate.training.lit_module import VLMLitModule


def test_crash_in_evaluation_keeps_the_training_and_rerun_only_evaluates(make_cfg, monkeypatch):
    cfg = make_cfg("study=resume", "eval.benchmarks=[pope]")
    real = experiment_run.evaluate_one

    def crash_on_pope(evaluation, *args, **kwargs):
        if evaluation.spec.name == "pope":
            raise RuntimeError("evaluation crashed")
        return real(evaluation, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(experiment_run, "evaluate_one", crash_on_pope)
        with pytest.raises(RuntimeError, match="evaluation crashed"):
            run_train(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    (training,) = [r for r in runs if r.data.tags["kind"] == "training"]
    # Both stages finished: the training is recorded; the held-out evaluation too; pope's
    # evaluation run is FAILED with the reason.
    assert training.info.status == "FINISHED"
    evaluations = {r.data.tags["benchmark"]: r for r in runs if r.data.tags["kind"] == "evaluation"}
    assert {k: r.info.status for k, r in evaluations.items()} == {
        "eval": "FINISHED",
        "pope": "FAILED",
    }
    assert evaluations["pope"].data.tags["failure"] == "RuntimeError: evaluation crashed"
    for name, key in training.data.tags.items():
        if name.startswith("stage_key."):
            assert StageLayout.of(cfg.paths.output_dir, key).finished, name

    def no_training(self, batch, batch_idx):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(VLMLitModule, "training_step", no_training)
    result = run_train(make_cfg("study=resume", "eval.benchmarks=[pope]"))
    assert result["mlflow_run_id"] == training.info.run_id
    assert result["stages"] == {"align": "reused", "finetune": "reused"}
    assert {k: v["new"] for k, v in result["evaluations"].items()} == {"eval": False, "pope": True}
    runs = client.search_runs([exp.experiment_id])
    evaluations = {r.data.tags["benchmark"]: r for r in runs if r.data.tags["kind"] == "evaluation"}
    assert len(runs) == 3 and {r.info.status for r in evaluations.values()} == {"FINISHED"}
    pope = evaluations["pope"]  # the failed run, continued: no second run for the same key
    assert pope.data.tags["resumes"] == "1" and "failure" not in pope.data.tags
    assert "finetune/pope/f1" in pope.data.metrics
