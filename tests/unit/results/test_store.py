"""The results store keeps one row per run key."""

from __future__ import annotations

from msl_ablate.results import store


def _row(key, acc, run_id):
    return {"run_key": key, "mlflow_run_id": run_id, "study": "s", "seed": 0, "vision": "v", "lm": "l",
            "projector": "p", "strategy": "st", "data": "d", "finetune/eval/exact_match": acc}  # fmt: skip


def test_upsert_replaces_same_key(tmp_path):
    path = tmp_path / "runs.csv"
    store.upsert(path, _row("k1", 10.0, "r1"))
    store.upsert(path, _row("k2", 20.0, "r2"))
    df = store.upsert(path, _row("k1", 30.0, "r3"))
    assert sorted(df["run_key"]) == ["k1", "k2"]
    assert df.set_index("run_key").loc["k1", "finetune/eval/exact_match"] == 30.0
    assert df.set_index("run_key").loc["k1", "mlflow_run_id"] == "r3"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file
