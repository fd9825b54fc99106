"""Training on LLaVA's data files exactly as released (fixtures in their layouts): both stages
through `data=llava_v15`, records with errors skipped and logged, the mix's text-only and
multi-turn records trained."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from tests.helpers.llava_files import pretrain, released

from msl_ablate.commands.train import run_train


def test_both_stages_train_on_the_released_files_skipping_bad_records(make_cfg, tmp_path):
    root = tmp_path / "playground" / "data"
    pretrain(root)
    released(root, broken=False)  # an unreadable image stops training: `data check` finds it
    cfg = make_cfg(
        "data=llava_v15", f"data.root={root}", "data.on_error=skip", "data.num_workers=0",
        "data.max_length=null", "data.max_text_length=200", "eval.split=null", "eval.benchmarks=[]", "study=llava-files",
        "strategy.stages.align.max_steps=2", "strategy.stages.align.batch_size=4",
        "strategy.stages.finetune.max_steps=2", "strategy.stages.finetune.batch_size=4",
        "trainer.enable_progress_bar=false", tiny=False,
    )  # fmt: skip
    result = run_train(cfg)
    assert result["stages"] == {"align": "trained", "finetune": "trained"}
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])
    metrics = run.data.metrics
    assert metrics["align/data/skipped_records"] == 0
    # missing, wrong extension, malformed turn: left out, counted and named in the run
    assert metrics["finetune/data/skipped_records"] == 3
    assert metrics["finetune/data/truncated_records"] == 0
    (listing,) = [a.path for a in client.list_artifacts(run.info.run_id, "data")]
    lines = Path(client.download_artifacts(run.info.run_id, listing)).read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["record missing", "record 140031996",
                                                      "record bad-turn"]  # fmt: skip
    assert run.data.tags["axis.data"] == "llava_v15"
