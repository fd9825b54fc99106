"""Run keys ignore paths and logging, and stage keys only depend on what a stage uses."""

from __future__ import annotations

from msl_ablate.config.compose import compose
from msl_ablate.tracking.run_key import run_key, stage_keys


def test_run_key_ignores_paths_and_tracking_but_not_seed():
    base = run_key(compose(["paths.root=/a"]))
    assert (
        run_key(compose(["paths.root=/b", "tracking.experiment=other", "data.num_workers=3"]))
        == base
    )
    assert run_key(compose(["paths.root=/a", "seed=1"])) != base
    assert run_key(compose(["paths.root=/a", "projector=linear"])) != base
    assert len(base) == 12


def test_stage_one_key_does_not_depend_on_stage_two():
    a = stage_keys(compose(["strategy.stages.finetune.lm.lr=1e-4"]))
    b = stage_keys(compose(["strategy.stages.finetune.lm.lr=2e-4"]))
    assert a["align"] == b["align"]
    assert a["finetune"] != b["finetune"]
    c = stage_keys(compose(["strategy.stages.align.max_steps=7"]))
    assert c["align"] != a["align"]
