"""LLaVA JSON loading errors and the synthetic generator."""

from __future__ import annotations

import json

import pytest

from msl_ablate.data.records import load_records
from msl_ablate.data.synthetic import caption, generate_dataset
from msl_ablate.data.world import Scene, SceneObject
from msl_ablate.utils.errors import DataError


def _write(path, records):
    path.write_text(json.dumps(records))
    return path


def test_missing_image_names_record_and_path(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"")
    conv = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "yo"}]
    path = _write(tmp_path / "d.json", [
        {"id": "good", "image": "ok.png", "conversations": conv},
        {"id": "rec-42", "image": "missing/img.png", "conversations": conv},
    ])  # fmt: skip
    with pytest.raises(DataError) as err:
        load_records(path, tmp_path)
    msg = str(err.value)
    assert "d.json" in msg and "rec-42" in msg and str(tmp_path / "missing/img.png") in msg
    assert "good" not in msg


def test_malformed_file_and_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        load_records(bad, tmp_path)
    with pytest.raises(DataError, match="record x: needs 'conversations', a non-empty list"):
        load_records(_write(tmp_path / "r.json", [{"id": "x"}]), tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_records(tmp_path / "nope.json", tmp_path)


def test_generation_is_deterministic_and_cached(tmp_path):
    kwargs = {"seed": 3, "n_captions": 4, "n_instruct": 8, "n_eval": 8}
    a = generate_dataset(tmp_path / "a", **kwargs)
    b = generate_dataset(tmp_path / "b", **kwargs)
    for name in ("captions.json", "instruct.json", "eval.json"):
        assert (a / name).read_text() == (b / name).read_text()
    assert (a / "images/eval_000003.png").read_bytes() == (
        b / "images/eval_000003.png"
    ).read_bytes()
    evals = json.loads((a / "eval.json").read_text())
    # Eval cycles through the four default types: 2 of each out of 8.
    assert sorted(r["question_type"] for r in evals) == sorted(
        ["colour", "shape", "count", "exists"] * 2
    )
    mtime = (a / "eval.json").stat().st_mtime_ns
    generate_dataset(tmp_path / "a", **kwargs)  # same manifest: nothing rewritten
    assert (a / "eval.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown \\['smell'\\]"):
        generate_dataset(tmp_path / "c", question_types=["smell"])


def test_caption_lists_shapes_in_cell_order_then_the_word():
    scene = Scene(
        objects=(SceneObject("circle", "red", 0), SceneObject("square", "blue", 3)),
        word="cat",
        word_cell=1,
    )
    assert (
        caption(scene)
        == "A red circle at the top left, a blue square at the bottom right, and the word cat."
    )


def test_choice_question_lists_options_and_answers_with_the_right_letter():
    import random

    from msl_ablate.data.synthetic import CHOICE_SUFFIX, ask_choice

    scene = Scene(objects=(SceneObject("circle", "red", 0), SceneObject("square", "blue", 3)))
    rng = random.Random(1)
    for _ in range(20):
        qa = ask_choice(scene, rng)
        lines = qa.question.split("\n")
        assert lines[-1] == CHOICE_SUFFIX
        options = dict(line.split(". ", 1) for line in lines[1:-1])
        truths = {
            "What colour is the circle?": "red",
            "What colour is the square?": "blue",
            "What shape is the red object?": "circle",
            "What shape is the blue object?": "square",
        }
        assert options[qa.answer] == truths[lines[0]], qa
        assert len(options) in (3, 4) and len(set(options.values())) == len(options)


def test_short_answer_prompt_only_on_open_instructions(tmp_path):
    from msl_ablate.data.synthetic import SHORT_ANSWER_PROMPT

    kwargs = {
        "n_captions": 2,
        "n_instruct": 40,
        "n_eval": 10,
        "question_types": ["colour", "choice"],
    }
    plain = generate_dataset(tmp_path / "plain", **kwargs)
    mixed = generate_dataset(tmp_path / "mixed", short_answer_prompt_prob=1.0, **kwargs)
    records = json.loads((mixed / "instruct.json").read_text())
    for r in records:
        question = r["conversations"][0]["value"]
        assert question.endswith(SHORT_ANSWER_PROMPT) == (r["question_type"] == "colour")
    assert SHORT_ANSWER_PROMPT not in (mixed / "eval.json").read_text()
    assert SHORT_ANSWER_PROMPT not in (plain / "instruct.json").read_text()
