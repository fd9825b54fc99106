"""MMBench circular scorer."""

from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring.files import write_jsonl
from msl_ablate.evaluation.scoring.mmbench import (
    circular_copies,
    mmbench_units,
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
    # LLaVA writes round_id 0 on every line without --all-rounds: the copies' rows are its own.
    rounds = [{"question_id": int(q), "round_id": 0, "text": t} for q, t in answers.items()]
    assert score_mmbench(tsv, write_jsonl(tmp_path / "r0.jsonl", rounds)) == m

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


# Originals only, as in mmbench_dev_en_20231003.tsv: index, options, the right one, categories.
ORIGINALS = [(0, ["cat", "dog", "bird"], "dog", LOC, FINE), (1, ["yes", "no"], "yes", EMO, COARSE),
             (2, ["sad", "happy"], "happy", EMO, COARSE)]  # fmt: skip


def _originals_tsv(tmp_path: Path) -> Path:
    tsv = tmp_path / "mmbench_dev_en_20231003.tsv"
    tsv.write_text(HEADER + "".join(_row(i, opts, "ABCD"[opts.index(right)], *cats)
                                    for i, opts, right, *cats in ORIGINALS))  # fmt: skip
    return tsv


def _llava_answers(path: Path, all_rounds: bool, wrong: tuple[int, int] | None = None) -> Path:
    """An answer file as LLaVA's model_vqa_mmbench.py writes it: a line per round, then the
    options rotated by one; the text is the right letter, but for the ``wrong`` (id, round)."""
    lines = []
    for index, options, right, *_ in ORIGINALS:
        for round_idx in range(len(options)):
            chars = list("ABCD"[: len(options)])
            letter = chars[options.index(right)]
            if (index, round_idx) == wrong:
                letter = chars[(options.index(right) + 1) % len(options)]
            prompt = "Which?" + "".join(f"\n{c}. {o}" for c, o in zip(chars, options, strict=True))
            lines.append({"question_id": index, "round_id": round_idx, "prompt": prompt,
                          "text": letter, "options": options, "option_char": chars,
                          "answer_id": f"a{index}r{round_idx}", "model_id": "llava-v1.5-7b",
                          "metadata": {}})  # fmt: skip
            if not all_rounds:
                break
            options = options[1:] + options[:1]
    return write_jsonl(path, lines)


def test_mmbench_tsv_without_copies_scores_llava_all_rounds(tmp_path: Path) -> None:
    tsv = _originals_tsv(tmp_path)
    # The copies are made from the rows: 3 + 2 + 2 questions, the answer letter rotating.
    questions = read_mmbench_tsv(tsv)
    assert [(q.index, q.answer, q.options[q.answer]) for q in questions[:3]] == [
        (0, "B", "dog"), (1000000, "A", "dog"), (2000000, "C", "dog")
    ]  # fmt: skip
    assert [q.index for q in questions[3:]] == [1, 1000001, 2, 1000002]
    assert questions[2].category == LOC and questions[6].l2_category == COARSE

    right = _llava_answers(tmp_path / "right.jsonl", all_rounds=True)
    assert score_mmbench(tsv, right)["circular_accuracy"] == 100.0
    # Round 1 of question 2 answered wrong: group 2 fails, the others stand.
    m = score_mmbench(tsv, _llava_answers(tmp_path / "a.jsonl", all_rounds=True, wrong=(2, 1)))
    assert m["circular_accuracy"] == pytest.approx(200 / 3)
    assert m[f"circular_accuracy/{LOC}"] == 100.0
    assert m[f"circular_accuracy/{EMO}"] == m[f"circular_accuracy/l2/{COARSE}"] == 50.0
    assert (m["n_groups"], m["n_questions"], m["n_predictions"], m["n_missing"]) == (3, 7, 7, 0)


def test_mmbench_tsv_without_copies_and_round_0_answers(tmp_path: Path) -> None:
    tsv = _originals_tsv(tmp_path)
    answers = _llava_answers(tmp_path / "a.jsonl", all_rounds=False)  # LLaVA's default
    m = score_mmbench(tsv, answers)
    assert m["circular_accuracy"] == 0.0  # every original right, every copy missing
    assert (m["n_groups"], m["n_questions"], m["n_predictions"], m["n_missing"]) == (3, 7, 3, 4)
    units = [(u["unit"], u["score"], u["copies"], u["copies_answered"])
             for u in mmbench_units(tsv, answers)]  # fmt: skip
    assert units == [("0", 0.0, 3, 1), ("1", 0.0, 2, 1), ("2", 0.0, 2, 1)]


def test_mmbench_round_id_errors(tmp_path: Path) -> None:
    tsv = _originals_tsv(tmp_path)

    def lines(name: str, *objs: dict) -> Path:
        return write_jsonl(tmp_path / name, [{"text": "A", **o} for o in objs])

    cases = [
        (lines("dup.jsonl", {"question_id": 0, "round_id": 1}, {"question_id": "0", "round_id": 1}),
         r"dup\.jsonl:2: duplicate question_id '0' \(read as '1000000', first on line 1\)"),
        (lines("range.jsonl", {"question_id": 1, "round_id": 0}, {"question_id": 1, "round_id": 2}),
         r"range\.jsonl:2: question_id '1': round_id 2 is out of range \(.*rounds 0\.\.1\)"),
        (lines("copy.jsonl", {"question_id": 1000000, "round_id": 1}),
         r"copy\.jsonl:1: question_id '1000000': round_id 1 is out of range"),
        (lines("neg.jsonl", {"question_id": 2, "round_id": -1}),
         r"neg\.jsonl:1: question_id '2': round_id must be an integer >= 0, got -1"),
        (lines("str.jsonl", {"question_id": 2, "round_id": "1"}),
         r"str\.jsonl:1: question_id '2': round_id must be an integer >= 0, got '1'"),
        (lines("unknown.jsonl", {"question_id": 7, "round_id": 1}),
         r"unknown\.jsonl:1: question_id '7' matches no question"),
    ]  # fmt: skip
    for answers, message in cases:
        with pytest.raises(ValueError, match=message):
            score_mmbench(tsv, answers)
    # Rotating options with a gap would invent one: refused, with the row named.
    tsv.write_text(HEADER + _row(0, ["x", "nan", "z"], "A", EMO, COARSE))
    with pytest.raises(ValueError, match=r"2: index 0: options \['A', 'C'\] have a gap"):
        read_mmbench_tsv(tsv)
