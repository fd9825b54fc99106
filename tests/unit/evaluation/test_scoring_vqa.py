"""VQA accuracy, VQAv2 and TextVQA scorers."""

import json
from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring.predictions import write_predictions
from msl_ablate.evaluation.scoring.textvqa import score_textvqa, write_textvqa
from msl_ablate.evaluation.scoring.vqa_accuracy import vqa_accuracy
from msl_ablate.evaluation.scoring.vqav2 import read_vqav2_annotations, score_vqav2, write_vqav2


@pytest.mark.parametrize(
    ("n_agree", "expected"),
    [
        # Leave-one-out over 10 annotators, min(1, matches / 3) each:
        (0, 0.0),
        (1, 0.3),  # (1 * 0/3 + 9 * 1/3) / 10
        (2, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10 = 18/30
        (3, 0.9),  # (3 * 2/3 + 7 * 1) / 10
        (4, 1.0),  # (4 * 1 + 6 * 1) / 10
    ],
)
def test_vqa_accuracy_partial_agreement(n_agree: int, expected: float) -> None:
    answers = ["dog"] * n_agree + ["cat"] * (10 - n_agree)
    assert vqa_accuracy("dog", answers) == pytest.approx(expected)


def test_vqa_accuracy_normalizes_prediction_and_answers() -> None:
    # "two"/"2" and "a dog"/"dog"/"Dog." agree once normalised.
    assert vqa_accuracy("two", ["2"] * 5 + ["two"] * 5) == pytest.approx(1.0)
    assert vqa_accuracy("Dog.", ["a dog", "the dog"] + ["cat"] * 8) == pytest.approx(0.6)


def _vqav2_annotation(qid: int, answers: list[str], answer_type: str) -> dict:
    return {
        "question_id": qid,
        "image_id": 1,
        "question_type": "what",
        "answer_type": answer_type,
        "multiple_choice_answer": answers[0],
        "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
            for i, a in enumerate(answers)
        ],
    }


def test_vqav2_hand_made_files(tmp_path: Path) -> None:
    ann = tmp_path / "v2_mscoco_val2014_annotations.json"
    annotations = [
        _vqav2_annotation(1, ["2"] * 5 + ["two"] * 5, "number"),  # pred "two" -> 1.0
        _vqav2_annotation(2, ["a dog", "Dog"] + ["cat"] * 8, "other"),  # pred "dog." -> 0.6
        _vqav2_annotation(3, ["yes"] * 10, "yes/no"),  # no prediction -> 0
        _vqav2_annotation(4, ["red"] + ["blue"] * 9, "other"),  # pred "Red" -> 0.3
    ]
    ann.write_text(json.dumps({"info": {}, "annotations": annotations}))
    preds = write_predictions(tmp_path / "answers.jsonl", {"1": "two", "2": "dog.", "4": "Red"})

    metrics = score_vqav2(ann, preds)

    assert metrics["accuracy"] == pytest.approx(100 * (1.0 + 0.6 + 0.0 + 0.3) / 4)  # 47.5
    assert metrics["accuracy/number"] == pytest.approx(100.0)
    assert metrics["accuracy/other"] == pytest.approx(45.0)
    assert metrics["accuracy/yes/no"] == pytest.approx(0.0)
    assert (metrics["n_questions"], metrics["n_predictions"], metrics["n_missing"]) == (4, 3, 1)


def test_textvqa_hand_made_file(tmp_path: Path) -> None:
    ann = tmp_path / "TextVQA_0.5.1_val.json"
    data = [
        {
            "question_id": 34602,
            "question": "brand?",
            "answers": ["nokia"] * 3 + ["nokia phone"] * 7,
        },
        {"question_id": 34603, "question": "sign?", "answers": ["stop"] * 10},
    ]
    ann.write_text(json.dumps({"dataset_name": "textvqa", "data": data}))
    preds = write_predictions(tmp_path / "answers.jsonl", {"34602": "Nokia.", "34603": "STOP!"})

    metrics = score_textvqa(ann, preds)

    assert metrics["accuracy"] == pytest.approx(100 * (0.9 + 1.0) / 2)
    assert not any(key.startswith("accuracy/") for key in metrics)
    assert metrics["n_missing"] == 0


RECORDS = [
    {"question_id": 10, "answers": ["2"] * 6 + ["3"] * 4, "answer_type": "number"},
    {"question_id": 11, "answers": ["yes"] * 10, "answer_type": "yes/no"},
    {"question_id": 12, "answers": ["red"] * 4 + ["dark red"] * 6, "answer_type": "other"},
]


def test_vqav2_round_trip_perfect(tmp_path: Path) -> None:
    ann = write_vqav2(tmp_path / "ann.json", RECORDS, questions_path=tmp_path / "questions.json")
    assert len(json.loads((tmp_path / "questions.json").read_text())["questions"]) == 3
    assert [q.question_id for q in read_vqav2_annotations(ann)] == ["10", "11", "12"]
    preds = write_predictions(
        tmp_path / "answers.jsonl", {str(r["question_id"]): r["answers"][0] for r in RECORDS}
    )
    metrics = score_vqav2(ann, preds)
    for key in ("accuracy", "accuracy/number", "accuracy/yes/no", "accuracy/other"):
        assert metrics[key] == pytest.approx(100.0), key
    assert metrics["n_missing"] == 0


def test_textvqa_round_trip_perfect(tmp_path: Path) -> None:
    ann = write_textvqa(tmp_path / "ann.json", [{**r, "answer_type": None} for r in RECORDS])
    preds = write_predictions(
        tmp_path / "answers.jsonl", {str(r["question_id"]): r["answers"][-1] for r in RECORDS}
    )
    assert score_textvqa(ann, preds)["accuracy"] == pytest.approx(100.0)


def test_unknown_question_id_raises_with_file_and_line(tmp_path: Path) -> None:
    ann = write_textvqa(tmp_path / "ann.json", [{**r, "answer_type": None} for r in RECORDS])
    preds = tmp_path / "answers.jsonl"
    preds.write_text('{"question_id": 10, "text": "2"}\n{"question_id": 999, "text": "x"}\n')
    with pytest.raises(ValueError, match=r"answers\.jsonl:2: question_id '999'"):
        score_textvqa(ann, preds)


def test_malformed_annotations_name_file_and_question(tmp_path: Path) -> None:
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"annotations": [_vqav2_annotation(7, ["a"] * 9, "other")]}))
    preds = write_predictions(tmp_path / "answers.jsonl", {})
    with pytest.raises(ValueError, match=r"ann\.json: annotations\[0\] \(question_id '7'\)"):
        score_vqav2(ann, preds)
    ann.write_text('{"annotations": [\n  {"question_id": 1,,}\n]}')
    with pytest.raises(ValueError, match=r"ann\.json:2: invalid JSON"):
        score_vqav2(ann, preds)


def test_textvqa_scores_llavas_answer_file_keyed_by_image(tmp_path: Path) -> None:
    # LLaVA's llava_textvqa_val_v051_ocr.jsonl names questions by their image's id (two about
    # one image here); its answer file carries that id and the prompt with the OCR tokens.
    ann = write_textvqa(tmp_path / "TextVQA_0.5.1_val.json", [
        {"question_id": 34602, "image_id": "003a8ae2ef43b901", "answers": ["dakota"] * 10,
         "question": "what is the brand of this camera?"},
        {"question_id": 34603, "image_id": "003a8ae2ef43b901", "answers": ["nokia"] * 10,
         "question": "what does the small white text spell?"},
        {"question_id": 34604, "image_id": "0054c91397f2fe05", "answers": ["5"] * 10,
         "question": "what number is on the bus?"},
    ])  # fmt: skip
    suffix = "Answer the question using a single word or phrase."
    rows = [("003a8ae2ef43b901", "What does the small white text spell?", "Nokia"),
            ("003a8ae2ef43b901", "What is the brand of this camera?", "Kodak"),
            ("0054c91397f2fe05", "What number is on the bus?", "5")]  # fmt: skip
    answers = tmp_path / "llava-v1.5-7b.jsonl"
    answers.write_text("".join(json.dumps({
        "question_id": image, "text": text, "answer_id": "x", "model_id": "m", "metadata": {},
        "prompt": f"{question}\nReference OCR token: DAKOTA, DIGITAL\n{suffix}"}) + "\n"
        for image, question, text in rows))  # fmt: skip

    m = score_textvqa(ann, answers)

    assert m["accuracy"] == pytest.approx(200 / 3) and m["n_missing"] == 0
    answers.write_text(answers.read_text().replace("number is on", "colour is"))
    with pytest.raises(ValueError, match="asks 'what colour is the bus\\?' about image"):
        score_textvqa(ann, answers)
