"""MMBench circular scorer."""

from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring.mmbench import (
    circular_copies,
    parse_letter,
    read_mmbench_tsv,
    score_mmbench,
    write_mmbench,
)
from msl_ablate.evaluation.scoring.predictions import write_predictions

HEADER = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\tl2-category\timage\n"
LOC, EMO = "object_localization", "image_emotion"
FINE, COARSE = "finegrained_perception (instance-level)", "coarse_perception"


def _row(index: int, options: list[str], answer: str, cat: str, l2: str) -> str:
    opts = (options + ["nan"] * 4)[:4]  # pandas writes missing options as "nan" or ""
    return "\t".join([str(index), "Which?", "nan", *opts, answer, cat, l2, "aGVsbG8="]) + "\n"


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("B", {"A": "cat", "B": "dog"}, "B"),
        ("(B) dog", {"A": "cat", "B": "dog"}, "B"),
        ("The answer is C.", {"A": "x", "B": "y", "C": "z"}, "C"),
        ("dog.", {"A": "cat", "B": "dog"}, "B"),  # option text
        ("A dog", {"A": "a cat", "B": "A dog"}, "B"),  # option text beats the article "A"
        ("The answer is C", {"A": "x", "B": "y"}, None),  # C is not an option here
        ("I cannot tell", {"A": "x", "B": "y"}, None),
        ("A", {"A": "b", "B": "a"}, "A"),  # a bare letter is a letter, not option text "a"
    ],
)
def test_parse_letter(text: str, options: dict[str, str], expected: str | None) -> None:
    assert parse_letter(text, options) == expected


def test_mmbench_hand_made_tsv(tmp_path: Path) -> None:
    tsv = tmp_path / "mmbench_dev_20230712.tsv"
    tsv.write_text(
        HEADER
        # group 0: three rotations of cat/dog/bird, answer dog; one rotation answered wrong
        + _row(0, ["cat", "dog", "bird"], "B", LOC, FINE)
        + _row(1000000, ["dog", "bird", "cat"], "A", LOC, FINE)
        + _row(2000000, ["bird", "cat", "dog"], "C", LOC, FINE)
        # group 1: both rotations right (one by option text)
        + _row(1, ["yes", "no"], "A", EMO, COARSE)
        + _row(1000001, ["no", "yes"], "B", EMO, COARSE)
        # group 2: one rotation has no prediction
        + _row(2, ["happy", "sad"], "A", EMO, COARSE)
        + _row(1000002, ["sad", "happy"], "B", EMO, COARSE)
    )
    answers = {
        "0": "B",
        "1000000": "A. dog",
        "2000000": "B",  # wrong rotation -> group 0 wrong
        "1": "yes",
        "1000001": "(B)",
        "2": "A",
    }
    m = score_mmbench(tsv, write_predictions(tmp_path / "answers.jsonl", answers))
    assert m["circular_accuracy"] == pytest.approx(100 / 3)
    assert m[f"circular_accuracy/{LOC}"] == pytest.approx(0.0)
    assert m[f"circular_accuracy/{EMO}"] == pytest.approx(50.0)
    assert m[f"circular_accuracy/l2/{COARSE}"] == pytest.approx(50.0)
    assert m[f"circular_accuracy/l2/{FINE}"] == pytest.approx(0.0)
    assert (m["n_groups"], m["n_questions"], m["n_predictions"], m["n_missing"]) == (3, 7, 6, 1)

    bad = write_predictions(tmp_path / "bad.jsonl", {"0": "B", "3000000": "A"})
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: question_id '3000000'"):
        score_mmbench(tsv, bad)


def test_mmbench_malformed_tsv(tmp_path: Path) -> None:
    tsv = tmp_path / "dev.tsv"
    tsv.write_text(
        HEADER + _row(0, ["x", "y"], "A", EMO, COARSE) + _row(1, ["x", "y"], "C", EMO, COARSE)
    )
    with pytest.raises(ValueError, match=r"dev\.tsv:3: index 1: answer 'C' is not one of"):
        read_mmbench_tsv(tsv)
    tsv.write_text("index\tquestion\tA\tB\tanswer\n")
    with pytest.raises(ValueError, match=r"dev\.tsv:1: header lacks column"):
        read_mmbench_tsv(tsv)


def test_mmbench_round_trip_perfect(tmp_path: Path) -> None:
    base = [
        {"index": 0, "question": "Q\twith tab?", "A": "a", "B": "b", "C": "c", "D": "d",
         "answer": "D", "category": LOC, "l2-category": FINE},
        {"index": 1, "question": "Q2", "hint": "h", "A": "x", "B": "y", "answer": "A",
         "category": EMO, "l2-category": COARSE},
    ]  # fmt: skip
    records = circular_copies(base)
    assert [r["index"] for r in records] == [0, 1000000, 2000000, 3000000, 1, 1000001]
    # Copy k puts the original answer at letter (answer - k): "d" moves D -> C -> B -> A.
    assert [(r["answer"], r[r["answer"]]) for r in records[:4]] == [
        ("D", "d"), ("C", "d"), ("B", "d"), ("A", "d")
    ]  # fmt: skip
    tsv = write_mmbench(tmp_path / "dev.tsv", records)
    assert read_mmbench_tsv(tsv)[0].options == {"A": "a", "B": "b", "C": "c", "D": "d"}
    preds = write_predictions(tmp_path / "a.jsonl", {str(r["index"]): r["answer"] for r in records})
    m = score_mmbench(tsv, preds)
    assert m["circular_accuracy"] == 100.0
    assert m[f"circular_accuracy/{LOC}"] == m[f"circular_accuracy/l2/{COARSE}"] == 100.0
    assert (m["n_groups"], m["n_missing"]) == (2, 0)
