"""The long results store: rows keyed by (training, evaluation, metric), protocols kept apart."""

from __future__ import annotations

import pytest

from msl_ablate.results import store


def _rows(training, evaluation, benchmark, protocol, values, scorer=None, strategy="st"):
    common = {"training_key": training, "evaluation_key": evaluation, "benchmark": benchmark,
              "protocol": protocol, "study": "s", "seed": 0, "vision": "v", "lm": "l",
              "projector": "p", "strategy": strategy, "data": "d", "stage": "finetune",
              "scorer": scorer or benchmark, "vision_weights": "google/siglip", "vision_twin": "true",
              "lm_weights": "microsoft/phi-2", "lm_twin": "true"}  # fmt: skip
    return [{**common, "metric": m, "value": v} for m, v in values.items()]


def test_upsert_replaces_an_evaluations_rows_and_keeps_the_others(tmp_path):
    path = tmp_path / "store.parquet"
    store.upsert(path, _rows("t1", "e1", "pope", "p1", {"f1": 10.0, "accuracy": 11.0}))
    store.upsert(path, _rows("t2", "e2", "pope", "p1", {"f1": 20.0, "accuracy": 21.0}))
    df = store.upsert(path, _rows("t1", "e1", "pope", "p1", {"f1": 30.0, "accuracy": 31.0}))
    assert len(df) == 4  # 2 evaluations x 2 metrics: the re-recorded one replaced, not added
    values = df.set_index(["evaluation_key", "metric"])["value"]
    assert values[("e1", "f1")] == 30.0 and values[("e2", "f1")] == 20.0
    assert set(df["vision_weights"]) == {"google/siglip"} and df["lm_twin"].all()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_two_protocols_of_one_benchmark_never_share_a_cell(tmp_path):
    path = tmp_path / "store.parquet"
    store.upsert(path, _rows("t1", "e1", "pope", "p1", {"f1": 10.0}))
    df = store.upsert(path, _rows("t1", "e2", "pope", "p2", {"f1": 50.0}))
    table = store.headline_table(df).set_index("training_key")
    assert table.loc["t1", "POPE@p1"] == 10.0 and table.loc["t1", "POPE@p2"] == 50.0
    one = store.headline_table(df[df["protocol"] == "p1"])
    assert list(one.columns[-1:]) == ["POPE"]  # one protocol: the plain label


def test_headline_table_orders_held_out_then_the_papers_benchmarks(tmp_path):
    path = tmp_path / "store.parquet"
    store.upsert(path, _rows("t1", "e1", "pope", "p", {"f1": 60.0, "precision": 1.0}))
    store.upsert(path, _rows("t1", "e2", "eval", "q", {"exact_match": 40.0,
                                                       "majority_baseline": 30.0,
                                                       "exact_match/count": 5.0},
                             scorer="exact_match"))  # fmt: skip
    df = store.upsert(path, _rows("t1", "e3", "gqa", "r", {"accuracy": 20.0}))
    table = store.headline_table(df)
    assert list(table.columns[7:]) == ["exact_match", "majority", "GQA", "POPE"]
    assert "exact_match" in store.summary(df) and "POPE" in store.summary(df)
    assert store.summary(store.load(tmp_path / "none.csv")) == "(the results store is empty)"


@pytest.mark.parametrize("text", ["\x00\xff\xfe garbage", "a,b\n1,2\n", ""])
def test_an_unreadable_store_is_a_clear_error(tmp_path, text):
    path = tmp_path / "store.parquet"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(store.StoreError, match=str(path)):
        store.load(path)


def test_summary_ends_with_the_chance_and_majority_answer_baselines(tmp_path):
    path = tmp_path / "store.parquet"
    store.upsert(
        path,
        _rows(
            "t1",
            "e1",
            "pope",
            "p",
            {"f1": 80.0, "majority_baseline/f1": 66.7, "majority_baseline/accuracy": 50.0,
             "chance_baseline/f1": 49.3},
        ),
    )  # fmt: skip
    store.upsert(path, _rows("t2", "e2", "pope", "p", {"f1": 70.0, "majority_baseline/f1": 66.7}))
    df = store.upsert(path, _rows("t1", "e3", "eval", "q", {"exact_match": 40.0,
                                                           "majority_baseline": 30.0},
                                  scorer="exact_match"))  # fmt: skip
    baseline = store.baseline_row(df)
    assert baseline.to_dict() == {"exact_match": 30.0, "POPE": 66.7}
    assert len(store.headline_table(df)) == 2  # the baseline is not a trained model's row
    assert store.baseline_row(df, "chance").to_dict() == {"POPE": 49.3}
    *_, chance, last = store.summary(df).splitlines()
    assert last.split()[0] == "(majority" and "66.7" in last and "30.0" in last
    assert chance.split()[0] == "(chance)" and "49.3" in chance and "30.0" not in chance


def _run(run_id, tags, params=None, metrics=None):
    from types import SimpleNamespace

    data = SimpleNamespace(tags=tags, params=params or {}, metrics=metrics or {})
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=0), data=data)


@pytest.mark.parametrize(
    ("tags", "studies"),
    [
        ({"study": "a"}, ["a"]),  # a run from before the per-study tags
        ({"study": "a", "study.a": "true", "study.b": "true"}, ["a", "b"]),
        ({}, [None]),
    ],
)
def test_an_evaluation_has_its_rows_once_per_study_of_its_training(tags, studies):
    evaluation = _run("e", {"training_key": "t", "evaluation_key": "k", "benchmark": "pope",
                            "protocol": "p", "stage": "finetune"},
                      metrics={"finetune/pope/f1": 70.0, "finetune/pope/accuracy": 71.0,
                               "align/pope/f1": 1.0})  # fmt: skip
    rows = store.rows_from_runs(evaluation, _run("t", tags))
    assert sorted((r["study"] or "", r["metric"]) for r in rows) == sorted(
        (s or "", m) for s in studies for m in ("accuracy", "f1"))  # fmt: skip
    assert {r["value"] for r in rows if r["metric"] == "f1"} == {70.0}
