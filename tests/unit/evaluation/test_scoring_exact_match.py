"""Exact match on LLaVA conversation files: references, the majority baseline, clear errors."""

from __future__ import annotations

import json

import pytest

from msl_ablate.evaluation.scoring.benchmarks import score


def _records(answers, qtype="count", with_field=True):
    out = []
    for i, answer in enumerate(answers):
        rec = {
            "id": f"r{i}",
            "image": None,
            "conversations": [
                {"from": "human", "value": "How many?"},
                {"from": "gpt", "value": answer},
            ],
        }
        if qtype is not None:
            rec["question_type"] = qtype
        if with_field:
            rec["answer"] = answer
        out.append(rec)
    return out


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _answers(path, texts):
    path.write_text("".join(json.dumps({"question_id": q, "text": t}) + "\n" for q, t in texts))
    return path


def test_scores_per_type_with_the_majority_baseline_of_another_file(tmp_path):
    train = _records(["2", "2", "3"]) + _records(["yes", "no", "no"], qtype="exists")
    for i, rec in enumerate(train):
        rec["id"] = f"t{i}"
    evals = _records(["2", "1", "2", "2"]) + _records(["yes", "no"], qtype="exists")
    for i, rec in enumerate(evals):
        rec["id"] = f"e{i}"
    annotations = _write(tmp_path / "eval.json", evals)
    # "Two." matches "2" after the official VQA normalisation; e5 gets no answer.
    preds = _answers(
        tmp_path / "answers.jsonl",
        [("e0", "Two."), ("e1", "2"), ("e2", "2"), ("e3", "2"), ("e4", "yes")],
    )
    metrics = score(
        "exact_match", annotations, preds, baseline=_write(tmp_path / "train.json", train)
    )
    assert metrics["exact_match/count"] == 75.0 and metrics["exact_match/exists"] == 50.0
    assert metrics["exact_match"] == pytest.approx(100 * 4 / 6)
    assert metrics["majority_baseline/count"] == 75.0
    assert metrics["majority_baseline/exists"] == 50.0
    assert metrics["majority_baseline"] == pytest.approx(100 * 4 / 6)
    assert (metrics["n_questions"], metrics["n_predictions"], metrics["n_missing"]) == (6, 5, 1)


def test_reference_is_the_last_answer_turn_when_there_is_no_answer_field(tmp_path):
    annotations = _write(tmp_path / "llava.json", _records(["a red circle"], None, False))
    metrics = score(
        "exact_match", annotations, _answers(tmp_path / "a.jsonl", [("r0", "Red circle")])
    )
    assert metrics["exact_match"] == 100.0 and "majority_baseline" not in metrics


def test_a_record_without_an_answer_is_named(tmp_path):
    records = _records(["2"], with_field=False)
    records[0]["conversations"] = records[0]["conversations"][:1]  # the question only
    annotations = _write(tmp_path / "llava.json", records)
    with pytest.raises(ValueError, match=r"llava.json: record r0 carries no answer"):
        score("exact_match", annotations, _answers(tmp_path / "a.jsonl", []))


def test_unknown_options_name_the_scorers_own(tmp_path):
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['split'\].*\['baseline'\]"):
        score("exact_match", tmp_path / "x.json", tmp_path / "a.jsonl", split="test")
