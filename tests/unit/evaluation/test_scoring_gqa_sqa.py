"""GQA and ScienceQA-IMG scorers."""

import json
from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring.gqa import score_gqa, write_gqa
from msl_ablate.evaluation.scoring.predictions import write_predictions
from msl_ablate.evaluation.scoring.scienceqa import parse_choice, score_sqa_img, write_scienceqa


def _gqa(qid: str, answer: str, structural: str) -> tuple[str, dict]:
    types = {"structural": structural, "semantic": "obj", "detailed": "x"}
    return qid, {"imageId": "n1", "question": "?", "answer": answer, "types": types}


def test_gqa_hand_made_file(tmp_path: Path) -> None:
    ann = tmp_path / "testdev_balanced_questions.json"
    ann.write_text(
        json.dumps(
            dict(
                [
                    _gqa("201", "yes", "verify"),  # "Yes." -> right
                    _gqa("202", "2", "query"),  # "two" -> right
                    _gqa("203", "table", "query"),  # "a chair" -> wrong
                    _gqa("204", "left", "choose"),  # missing -> wrong
                ]
            )
        )
    )
    preds = write_predictions(
        tmp_path / "answers.jsonl", {"201": "Yes.", "202": "two", "203": "a chair"}
    )
    metrics = score_gqa(ann, preds)
    assert metrics["accuracy"] == pytest.approx(50.0)
    assert metrics["accuracy/verify"] == pytest.approx(100.0)
    assert metrics["accuracy/query"] == pytest.approx(50.0)
    assert metrics["accuracy/choose"] == pytest.approx(0.0)
    assert (metrics["n_questions"], metrics["n_predictions"], metrics["n_missing"]) == (4, 3, 1)


def test_gqa_round_trip_and_unknown_id(tmp_path: Path) -> None:
    records = [
        {"question_id": "1", "answer": "red", "structural": "query"},
        {"question_id": "2", "answer": "no", "structural": "verify"},
    ]
    ann = write_gqa(tmp_path / "q.json", records)
    preds = write_predictions(
        tmp_path / "a.jsonl", {r["question_id"]: r["answer"] for r in records}
    )
    metrics = score_gqa(ann, preds)
    assert metrics["accuracy"] == metrics["accuracy/query"] == metrics["accuracy/verify"] == 100.0
    bad = write_predictions(tmp_path / "bad.jsonl", {"1": "red", "3": "x"})
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: question_id '3'"):
        score_gqa(ann, bad)


@pytest.mark.parametrize(
    ("text", "n_choices", "expected"),
    [
        ("B", 3, 1),
        (" B\n", 3, 1),
        ("The answer is B.", 3, 1),
        ("The answer is (B).", 3, 1),
        ("(C)", 3, 2),
        ("(C) bird", 3, 2),
        ("B. because dogs bark", 3, 1),
        ("A cat", 3, None),  # an article, not a choice
        ("The answer is A. The answer is B.", 3, None),  # contradictory
        ("E", 3, None),  # beyond the choices
        ("I do not know", 3, None),
    ],
)
def test_parse_choice(text: str, n_choices: int, expected: int | None) -> None:
    assert parse_choice(text, n_choices) == expected


def _problem(image: str | None, choices: list[str], answer: int, subject: str, split: str) -> dict:
    return {
        "question": "?",
        "choices": choices,
        "answer": answer,
        "image": image,
        "subject": subject,
        "split": split,
    }


def test_sqa_img_hand_made_files(tmp_path: Path) -> None:
    nat, soc, lang = "natural science", "social science", "language science"
    problems = {
        "1": _problem("image.png", ["cat", "dog", "bird"], 1, nat, "test"),  # (B) -> right
        "2": _problem("image.png", ["x", "y"], 0, soc, "test"),  # "B" -> wrong
        "3": _problem("image.png", ["x", "y", "z", "w"], 3, nat, "test"),  # "(D) w" -> right
        "4": _problem("image.png", ["x", "y"], 0, lang, "test"),  # unparseable -> wrong
        "5": _problem(None, ["x", "y"], 0, nat, "test"),  # text-only: not scored
        "6": _problem("image.png", ["x", "y"], 0, nat, "test"),  # missing -> wrong
        "7": _problem("image.png", ["x", "y"], 0, nat, "val"),  # other split: not scored
        "8": _problem("image.png", ["x", "y"], 1, nat, "test"),  # "C" beyond choices -> wrong
    }
    splits = {"test": ["1", "2", "3", "4", "5", "6", "8"], "val": ["7"]}
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    (tmp_path / "pid_splits.json").write_text(json.dumps(splits))
    preds = write_predictions(
        tmp_path / "answers.jsonl",
        {
            "1": "The answer is (B).",
            "2": "B",
            "3": "(D) w",
            "4": "I am not sure",
            "5": "A",
            "7": "A",
            "8": "C",
        },
    )
    metrics = score_sqa_img(tmp_path, preds)
    assert metrics["accuracy"] == pytest.approx(100 * 2 / 6)
    assert metrics[f"accuracy/{nat}"] == pytest.approx(50.0)  # 1, 3 right of 1, 3, 6, 8
    assert metrics[f"accuracy/{soc}"] == pytest.approx(0.0)
    assert metrics[f"accuracy/{lang}"] == pytest.approx(0.0)
    assert (metrics["n_questions"], metrics["n_predictions"], metrics["n_missing"]) == (6, 5, 1)
    assert metrics["n_unparsed"] == 2  # "I am not sure", "C"
    # The val split has one image question, answered "A" = right.
    assert score_sqa_img(tmp_path / "problems.json", preds, split="val")["accuracy"] == 100.0
    with pytest.raises(ValueError, match=r"pid_splits\.json: no split 'minitest'"):
        score_sqa_img(tmp_path, preds, split="minitest")
    bad = write_predictions(tmp_path / "bad.jsonl", {"1": "A", "42": "B"})
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: question_id '42'"):
        score_sqa_img(tmp_path, bad)


def test_sqa_round_trip_perfect(tmp_path: Path) -> None:
    records = [
        {"pid": "a", "question": "?", "choices": ["x", "y"], "answer": 1, "image": "image.png"},
        {"pid": "b", "question": "?", "choices": ["x", "y", "z"], "answer": 2, "image": "i.png",
         "subject": "social science"},
        {"pid": "c", "question": "?", "choices": ["x", "y"], "answer": 0, "image": None},
    ]  # fmt: skip
    write_scienceqa(tmp_path / "sqa", records)
    preds = write_predictions(tmp_path / "a.jsonl", {r["pid"]: "ABC"[r["answer"]] for r in records})
    metrics = score_sqa_img(tmp_path / "sqa", preds)
    assert metrics["accuracy"] == 100.0
    assert metrics["accuracy/natural science"] == metrics["accuracy/social science"] == 100.0
    assert (metrics["n_questions"], metrics["n_missing"]) == (2, 0)
