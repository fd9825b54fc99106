"""POPE and MME scorers."""

import json
from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring import mme, pope
from msl_ablate.evaluation.scoring.predictions import write_predictions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, there is a dog.", "yes"),
        ("Yes", "yes"),
        ("No.", "no"),
        ("No, there is no dog.", "no"),
        ("There is not a cat in the image.", "no"),
        ("The image shows a dog. No cat.", "yes"),  # only the first sentence counts
        ("Nope", "yes"),  # the official word test, quirks included
    ],
)
def test_pope_parse(text: str, expected: str) -> None:
    assert pope.parse_yes_no(text) == expected


def _pope_file(path: Path, labels: dict[int, str]) -> None:
    lines = [
        json.dumps({"question_id": q, "image": "x.jpg", "text": "Is there a dog?", "label": lab})
        for q, lab in labels.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def test_pope_hand_made_files(tmp_path: Path) -> None:
    ann = tmp_path / "coco"
    ann.mkdir()
    _pope_file(ann / "coco_pope_adversarial.json", {1: "yes", 2: "yes", 3: "no", 4: "no",
                                                    5: "yes", 6: "no", 7: "yes"})  # fmt: skip
    _pope_file(ann / "coco_pope_random.json", {1: "yes", 2: "no"})  # ids restart per split
    answers = {
        "adversarial/1": "Yes, there is a dog.",  # TP
        "adversarial/2": "No, there is no dog.",  # FN
        "adversarial/3": "There is not a cat in the image.",  # TN
        "adversarial/4": "no",  # TN
        # adversarial/5 (yes) missing: FN, predicts neither class
        "adversarial/6": "The image shows a dog. No cat.",  # FP
        "adversarial/7": "Yes",  # TP
        "random/1": "Yes",
        "random/2": "No",
    }
    preds = write_predictions(tmp_path / "answers.jsonl", answers)

    m = pope.score_pope(ann, preds)

    # adversarial: TP=2 TN=2 FP=1 FN=2 (one missing), N=7, predicted yes=3.
    adv = {
        "accuracy": 100 * 4 / 7,
        "precision": 100 * 2 / 3,
        "recall": 100 * 2 / 4,
        "f1": 100 * 4 / 7,  # 2 * (2/3) * (1/2) / (2/3 + 1/2)
        "yes_ratio": 100 * 3 / 7,
    }
    for key, value in adv.items():
        assert m[f"adversarial/{key}"] == pytest.approx(value), key
        assert m[f"random/{key}"] == pytest.approx(50.0 if key == "yes_ratio" else 100.0), key
        assert m[key] == pytest.approx((value + m[f"random/{key}"]) / 2), key
    assert (m["adversarial/n_questions"], m["random/n_questions"]) == (7, 2)
    assert (m["n_questions"], m["n_predictions"], m["n_missing"]) == (9, 8, 1)

    only = pope.score_pope(ann, preds, split="random")
    assert only["f1"] == 100.0 and only["n_questions"] == 2 and "adversarial/f1" not in only
    # A single file is the whole annotation set: answers for other splits are unknown ids.
    with pytest.raises(ValueError, match=r"answers\.jsonl:1: question_id 'adversarial/1'"):
        pope.score_pope(ann / "coco_pope_random.json", preds)
    random_only = {k: v for k, v in answers.items() if k.startswith("random/")}
    single = pope.score_pope(
        ann / "coco_pope_random.json", write_predictions(tmp_path / "r.jsonl", random_only)
    )
    assert single["accuracy"] == 100.0 and single["n_questions"] == 2

    bad = write_predictions(tmp_path / "bad.jsonl", {"random/1": "Yes", "1": "No"})
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: question_id '1'.*'<split>/<question_id>'"):
        pope.score_pope(ann, bad)


def test_pope_round_trip_perfect(tmp_path: Path) -> None:
    records = [
        {"split": s, "question_id": q, "label": lab}
        for s in pope.SPLITS
        for q, lab in enumerate(["yes", "no", "yes", "no"])
    ]
    ann = pope.write_pope(tmp_path / "pope", records)
    preds = write_predictions(
        tmp_path / "a.jsonl",
        {pope.pope_question_id(r["split"], r["question_id"]): r["label"].capitalize() + "."
         for r in records},
    )  # fmt: skip
    m = pope.score_pope(ann, preds)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert m[key] == 100.0
        assert all(m[f"{s}/{key}"] == 100.0 for s in pope.SPLITS)
    assert m["yes_ratio"] == 50.0 and m["n_missing"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Yes", "yes"), ("no", "no"), (" yes.", "yes"), ("Not at all", "no"),
     ("The answer is yes", "other"), ("Maybe", "other")],
)  # fmt: skip
def test_mme_parse(text: str, expected: str) -> None:
    assert mme.parse_yes_no(text) == expected


def test_mme_hand_made_files(tmp_path: Path) -> None:
    ann = tmp_path / "mme"
    ann.mkdir()
    (ann / "existence.txt").write_text(
        "img1.jpg\tIs there a dog?\tYes\nimg1.jpg\tIs there a cat?\tNo\n"
        "img2.jpg\tIs there a car?\tYes\nimg2.jpg\tIs there a bus?\tNo\n"
    )
    (ann / "OCR.txt").write_text("a.jpg\tDoes it say A?\tYes\na.jpg\tDoes it say B?\tNo\n")
    (ann / "code_reasoning.txt").write_text("c.jpg\tPrints 1?\tYes\nc.jpg\tPrints 2?\tNo\n")
    qid = mme.mme_question_id
    answers = {
        qid("existence", "img1.jpg", 0): "Yes",
        qid("existence", "img1.jpg", 1): "No, there is not.",
        qid("existence", "img2.jpg", 0): "yes",
        qid("existence", "img2.jpg", 1): "Yes",  # wrong: img2 fails acc+
        qid("OCR", "a.jpg", 0): "Maybe",  # "other": wrong
        # OCR a.jpg question 1 missing: wrong
        qid("code_reasoning", "c.jpg", 0): "yes",
        qid("code_reasoning", "c.jpg", 1): "no",
    }
    preds = write_predictions(tmp_path / "answers.jsonl", answers)

    m = mme.score_mme(ann, preds)

    assert m["existence/acc"] == pytest.approx(75.0)  # 3 of 4 questions
    assert m["existence/acc_plus"] == pytest.approx(50.0)  # 1 of 2 images
    assert m["existence/score"] == pytest.approx(125.0)
    assert m["OCR/score"] == pytest.approx(0.0)
    assert m["code_reasoning/score"] == pytest.approx(200.0)
    assert m["perception"] == pytest.approx(125.0)
    assert m["cognition"] == pytest.approx(200.0)
    assert (m["n_questions"], m["n_predictions"], m["n_missing"], m["n_other"]) == (8, 7, 1, 1)

    bad = write_predictions(tmp_path / "bad.jsonl", {"existence/img1.jpg/2": "Yes"})
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: question_id 'existence/img1\.jpg/2'"):
        mme.score_mme(ann, bad)
    (ann / "count.txt").write_text("x.jpg\tHow many?\tYes\nx.jpg\tbroken line\n")
    with pytest.raises(ValueError, match=r"count\.txt:2: expected"):
        mme.score_mme(ann, preds)


def test_mme_round_trip_perfect(tmp_path: Path) -> None:
    records = [
        {"category": cat, "image": f"{i}.png", "question": f"q{k}?", "answer": ("yes", "no")[k]}
        for cat in ("color", "scene", "numerical_calculation")
        for i in range(2)
        for k in range(2)
    ]
    ann = mme.write_mme(tmp_path / "mme", records)
    texts: dict[str, str] = {}
    for rec in records:
        k = sum(1 for key in texts if key.startswith(f"{rec['category']}/{rec['image']}/"))
        texts[mme.mme_question_id(rec["category"], rec["image"], k)] = rec["answer"].title()
    m = mme.score_mme(ann, write_predictions(tmp_path / "a.jsonl", texts))
    assert m["perception"] == 400.0 and m["cognition"] == 200.0
    assert all(m[f"{c}/acc_plus"] == 100.0 for c in ("color", "scene", "numerical_calculation"))
    assert m["n_missing"] == 0


def test_pope_scores_llavas_own_answer_file_through_its_question_file(tmp_path: Path) -> None:
    # As LLaVA ships them: coco_pope_<split>.json (ids restart per split), and one question
    # file with the prompt suffix in `text`, its own ids and the split as `category`; the
    # answer file model_vqa_loader.py writes carries those ids, in any order.
    ann = tmp_path / "coco"
    ann.mkdir()
    pope_rows = {"adversarial": [("a.jpg", "Is there a dog in the imange?", "yes"),
                                 ("a.jpg", "Is there a cat in the imange?", "no")],
                 "random": [("b.jpg", "Is there a dog in the imange?", "no"),
                            ("c.jpg", "Is there a dog in the imange?", "yes")]}  # fmt: skip
    questions, answers = [], []
    for offset, (split, rows) in zip((0, 10_000_000), pope_rows.items(), strict=True):
        lines = [json.dumps({"question_id": i + 1, "image": im, "text": q, "label": lab})
                 for i, (im, q, lab) in enumerate(rows)]  # fmt: skip
        (ann / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
        for i, (image, text, label) in enumerate(rows):
            qid = offset + i + 1
            questions.append(
                {
                    "question_id": qid,
                    "image": image,
                    "category": split,
                    "text": f"{text}\nAnswer the question using a single word or phrase.",
                }
            )
            answers.append({"question_id": qid, "prompt": questions[-1]["text"],
                            "text": "Yes" if label == "yes" else "No", "answer_id": "x",
                            "model_id": "llava-v1.5-7b", "metadata": {}})  # fmt: skip
    answers[1]["text"] = "Yes"  # one wrong: a false positive in adversarial
    qfile, afile = tmp_path / "llava_pope_test.jsonl", tmp_path / "answers.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    afile.write_text("".join(json.dumps(a) + "\n" for a in reversed(answers)))

    m = pope.score_pope(ann, afile, questions=qfile)

    assert m["random/accuracy"] == 100.0 and m["adversarial/accuracy"] == 50.0
    assert m["adversarial/precision"] == 50.0 and m["n_missing"] == 0
    # Without the question file the ids mean nothing to the scorer, and it says so.
    with pytest.raises(ValueError, match="matches no question"):
        pope.score_pope(ann, afile)
    questions[0]["text"] = "Is there a bird?\nAnswer the question using a single word or phrase."
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    with pytest.raises(ValueError, match="question_id '1': no question of coco_pope_adversarial"):
        pope.score_pope(ann, afile, questions=qfile)


def test_mme_scores_llavas_answer_file_against_the_released_folder(tmp_path: Path) -> None:
    # MME_Benchmark_release_version: a category with images/ + questions_answers_YN/, one with
    # the image and its questions side by side; LLaVA's answers name the image path, twice.
    root = tmp_path / "MME_Benchmark_release_version"
    (root / "artwork" / "images").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN").mkdir()
    (root / "code_reasoning").mkdir()
    (root / "artwork" / "images" / "14777.jpg").write_bytes(b"jpg")
    (root / "code_reasoning" / "0020.png").write_bytes(b"png")
    suffix = " Please answer yes or no."
    (root / "artwork" / "questions_answers_YN" / "14777.txt").write_text(
        f"Is this artwork created by Bosch?{suffix}\tYes\n"
        f"Is this artwork created by Rubens?{suffix}\tNo\n"
    )
    (root / "code_reasoning" / "0020.txt").write_text(
        f"Is a python code shown in the picture?{suffix}\tYes\n"
        f"Is a c++ code shown in the picture?{suffix}\tNo\n"
    )
    llava = "\nAnswer the question using a single word or phrase."
    answers = [("code_reasoning/0020.png", "Is a c++ code shown in the picture?", "No"),
               ("artwork/images/14777.jpg", "Is this artwork created by Bosch?", "Yes"),
               ("artwork/images/14777.jpg", "Is this artwork created by Rubens?", "Yes"),
               ("code_reasoning/0020.png", "Is a python code shown in the picture?", "Yes")]  # fmt: skip
    afile = tmp_path / "llava-v1.5-7b.jsonl"
    afile.write_text("".join(json.dumps({"question_id": q, "prompt": p + llava, "text": t,
                                         "answer_id": "x", "model_id": "m", "metadata": {}}) + "\n"
                             for q, p, t in answers))  # fmt: skip

    m = mme.score_mme(root, afile)

    assert m["artwork/acc"] == 50.0 and m["artwork/acc_plus"] == 0.0
    assert m["code_reasoning/score"] == 200.0 and m["cognition"] == 200.0
    assert m["perception"] == 50.0 and m["n_missing"] == 0
    afile.write_text(afile.read_text().replace("Is a c++ code", "Is a java code"))
    with pytest.raises(ValueError, match="'code_reasoning/0020.png': the prompt 'Is a java code"):
        mme.score_mme(root, afile)
