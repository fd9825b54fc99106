"""``msl-ablate bench``: both contenders timed on the same model and data, in one table."""

from __future__ import annotations

import json

import pytest

from msl_ablate.commands.bench import main as bench_main
from msl_ablate.experiment.bench import pick_records, run_bench


def test_equal_lengths_are_the_most_common_length_widened_until_there_are_enough():
    records = [{"id": i} for i in range(9)]
    lengths = [5, 5, 5, 9, 6, 4, 20, 6, 6]
    assert [r["id"] for r in pick_records(records, lengths, "equal", 3)] == [0, 1, 2]
    # 5 (three) is widened to its nearest lengths, 4 before 6 on a tie
    assert [r["id"] for r in pick_records(records, lengths, "equal", 4)] == [0, 1, 2, 5]
    assert [r["id"] for r in pick_records(records, lengths, "equal", 5)] == [0, 1, 2, 4, 5, 7, 8]
    assert pick_records(records, lengths, "variable", 100) == records


def test_bench_times_both_contenders_on_the_same_model(make_cfg, tmp_path):
    cfg = make_cfg()
    settings = run_bench(cfg, ["align", "finetune"], ["equal", "variable"], 2, 1, tmp_path)
    assert [(s["stage"], s["lengths"]) for s in settings] == [
        ("align", "equal"),
        ("align", "variable"),
        ("finetune", "equal"),
        ("finetune", "variable"),
    ]
    for setting in settings:
        first = setting["first_loss"]  # the same weights: the same loss on one batch
        assert first["harness"] == pytest.approx(first["transformers loop"], rel=1e-5)
        loop, harness = setting["rows"]
        assert (loop["contender"], harness["contender"]) == ("transformers loop", "harness")
        assert loop["steps"] == harness["steps"] == 2
        assert loop["ratio"] == 1.0
        assert harness["ratio"] == pytest.approx(
            harness["samples_per_s"] / loop["samples_per_s"], rel=1e-2
        )
        for row in (loop, harness):
            assert row["samples_per_s"] > 0 and row["tokens_per_s"] > 0
            assert 0.0 <= row["padding"] < 1.0
    # equal: the records of the most common length (widened: the tiny split has few of them)
    records = {(s["stage"], s["lengths"]): s["records"] for s in settings}
    assert 4 <= records["finetune", "equal"] < records["finetune", "variable"] == 32
    written = json.loads((tmp_path / "bench.json").read_text())
    assert len(written["settings"]) == 4
    table = (tmp_path / "bench.md").read_text()
    assert "transformers loop" in table and "| finetune" in table and "First-batch losses" in table


def test_bench_rejects_bad_arguments_before_building_anything(capsys, tiny_overrides):
    assert bench_main(["--lengths", "short", "--stages", "pretrain", *tiny_overrides]) == 2
    err = capsys.readouterr().err
    assert "--lengths 'short' is not one of equal, variable" in err
    assert "no stage 'pretrain' in strategy=align_then_finetune (it has align, finetune)" in err


def test_bench_refuses_a_model_transformers_llava_cannot_hold(capsys, tiny_overrides, tmp_path):
    args = ["--steps", "1", "--stages", "align", "--out", str(tmp_path)]
    assert bench_main([*args, *tiny_overrides, "projector=linear"]) == 2
    assert "LLaVA's projector is Linear -> GELU -> Linear" in capsys.readouterr().err
    assert not (tmp_path / "bench.md").exists()
