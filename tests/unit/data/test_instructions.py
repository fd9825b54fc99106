"""The instruction mix: every task in its benchmark's format, deterministic, held out by seed."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from msl_ablate.data.facts import present
from msl_ablate.data.instructions import (
    TASKS,
    TEXT_ONLY_WRITERS,
    corpus,
    generate_instruction_mix,
    text_listed,
    text_match,
)
from msl_ablate.data.synthetic import CHOICE_SUFFIX, SHORT_ANSWER_PROMPT
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.data.world import WORDS, sample_scene

SMALL = {"n_captions": 4, "n_instruct": 120, "n_eval": 14}


def _turns(task: str, n: int = 60) -> list[tuple]:
    rng = random.Random(task)
    out = []
    while len(out) < n:
        scene = sample_scene(rng)
        turn = TASKS[task](scene, rng)
        if turn is not None:
            out.append((scene, *turn))
    return out


@pytest.mark.parametrize("task", ["vqa", "gqa", "ocr", "pope"])
def test_short_answer_tasks_carry_llava_suffix_and_answer_in_one_word(task: str) -> None:
    for _, question, answer in _turns(task):
        assert question.endswith(f"\n{SHORT_ANSWER_PROMPT}")
        assert len(answer.split()) <= 2 and answer == answer.lower()


def test_pope_negatives_are_absent_and_half_of_them_adversarial() -> None:
    negatives = similar = 0
    for scene, question, answer in _turns("pope", 400):
        asked = re.match(r"Is there a (\w+ \w+) in the image\?", question).group(1)
        assert (asked in present(scene)) == (answer == "yes")
        if answer == "no":
            negatives += 1
            similar += any(set(asked.split()) & set(p.split()) for p in present(scene))
    assert 150 < negatives < 250 and similar / negatives > 0.5  # adversarial + random overlap


def test_every_yes_or_no_of_the_mix_is_one_pair_of_words(tmp_path: Path) -> None:
    # Measured (docs/zoo.md): with MME's answers capitalised, POPE plus MME records left the tiny
    # demo model at chance after 1500 steps; with one pair, one seed of two grounded them by 600.
    root = generate_instruction_mix(tmp_path, **SMALL, text_only_prob=0.3)
    records = json.loads((root / "instruct.json").read_text())
    answers = [t["value"] for r in records for t in r["conversations"] if t["from"] == "gpt"]
    yes_no = [a for a in answers if a.lower() in ("yes", "no")]
    assert len(yes_no) > 30 and set(yes_no) == {"yes", "no"}


def test_mme_questions_ask_yes_or_no_in_mmes_words() -> None:
    answers = {a for _, q, a in _turns("mme")}
    # Lower case, as POPE's and VQAv2's: one pair of answer tokens for every yes/no question
    # (MME's scorer reads either case).
    assert answers == {"yes", "no"}
    assert all("Please answer yes or no." in q for _, q, _ in _turns("mme"))


@pytest.mark.parametrize(("task", "lead"), [("sqa", "Context: "), ("mmbench", "")])
def test_choice_tasks_answer_with_the_letter_of_the_right_option(task: str, lead: str) -> None:
    for _, question, answer in _turns(task):
        assert question.startswith(lead) and question.endswith(CHOICE_SUFFIX)
        letters = re.findall(r"^([A-D])\. ", question, flags=re.M)
        assert letters == list("ABCD"[: len(letters)]) and answer in letters


def test_the_mix_is_deterministic_multi_turn_and_has_text_only_records(tmp_path: Path) -> None:
    a = generate_instruction_mix(tmp_path / "a", seed=3, text_only_prob=0.1, **SMALL)
    b = generate_instruction_mix(tmp_path / "b", seed=3, text_only_prob=0.1, **SMALL)
    records = json.loads((a / "instruct.json").read_text())
    assert records == json.loads((b / "instruct.json").read_text())
    text_only = [r for r in records if "image" not in r]
    assert text_only and all(IMAGE_TOKEN not in r["conversations"][0]["value"] for r in text_only)
    multi = [r for r in records if len(r["conversations"]) > 2]
    assert multi and all(
        IMAGE_TOKEN not in t["value"] for r in multi for t in r["conversations"][1:]
    )
    assert {r["question_type"] for r in records} >= set(TASKS) - {"caption"}
    assert {r["text_skill"] for r in text_only} == set(TEXT_ONLY_WRITERS)


def test_text_skill_records_are_answered_right() -> None:
    rng = random.Random(0)
    for _ in range(200):
        question, letter = text_match(rng)
        value = re.match(r'Which option is "(.+)"\?', question).group(1)
        options = dict(re.findall(r"^([A-D])\. (.+)$", question, flags=re.M))
        assert options[letter] == value and list(options.values()).count(value) == 1
        question, answer = text_listed(rng)
        listed, asked = re.match(r"The \w+s are: (.+)\. Is (.+) one of them\?", question).groups()
        assert answer == ("yes" if asked in listed.split(", ") else "no")
    answers = [text_listed(rng)[1] for _ in range(400)]
    assert 150 < answers.count("yes") < 250  # balanced, so "yes" to all is no better than chance


def test_the_held_out_split_asks_short_answers_in_equal_shares(tmp_path: Path) -> None:
    root = generate_instruction_mix(tmp_path, seed=0, **SMALL)
    held_out = json.loads((root / "eval.json").read_text())
    types = [r["question_type"] for r in held_out]
    assert sorted(set(types)) == sorted(set(TASKS) - {"caption"})
    assert all(len(r["conversations"]) == 2 and r["answer"] for r in held_out)


def test_unknown_tasks_name_the_key_and_the_valid_tasks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.generator.tasks: unknown \['nope'\].*caption"):
        generate_instruction_mix(tmp_path, tasks={"nope": 1.0}, **SMALL)


def test_a_stage_split_holds_its_tasks_and_leaves_the_mix_as_it_was(tmp_path: Path) -> None:
    plain = generate_instruction_mix(tmp_path / "plain", seed=2, **SMALL)
    staged = generate_instruction_mix(
        tmp_path / "staged", seed=2, stage_splits={"read": {"n": 30, "tasks": {"ocr": 1}}}, **SMALL
    )
    for split in ("captions.json", "instruct.json", "eval.json"):
        assert (plain / split).read_text() == (staged / split).read_text()
    records = json.loads((staged / "read.json").read_text())
    assert len(records) == 30 and {r["question_type"] for r in records} == {"ocr"}
    assert all(len(r["conversations"]) == 2 and r["answer"] in WORDS for r in records)
    assert all((staged / r["image"]).is_file() for r in records)
    manifest = json.loads((staged / "manifest.json").read_text())["params"]
    assert manifest["stage_splits"] == {"read": {"n": 30, "tasks": {"ocr": 1.0}}}
    assert "stage_splits" not in json.loads((plain / "manifest.json").read_text())["params"]


def test_a_circular_split_asks_each_question_under_every_rotation(tmp_path: Path) -> None:
    tasks = {"sqa": 1, "mmbench": 1, "pope": 1}
    root = generate_instruction_mix(
        tmp_path, stage_splits={"letters": {"n": 40, "tasks": tasks, "circular": True}}, **SMALL
    )
    records = json.loads((root / "letters.json").read_text())
    assert {r["question_type"] for r in records} == set(tasks)
    second_shifts = set()  # the rotations in random order: the letter never follows the last
    for record in records:
        turns = record["conversations"]
        questions, answers = [t["value"] for t in turns[::2]], [t["value"] for t in turns[1::2]]
        if record["question_type"] == "pope":
            assert len(turns) == 2 and answers[0] in ("yes", "no")
            continue
        options = [re.findall(r"^[A-D]\. (.+)$", q, re.M) for q in questions]
        # As many turns as options, each a rotation of the first turn's options, no two alike.
        first = options[0]
        assert len(questions) == len(first) >= 2
        rotations = [first[k:] + first[:k] for k in range(len(first))]
        assert sorted(map(rotations.index, options)) == list(range(len(first)))
        second_shifts.add(rotations.index(options[1]))
        # The right option is one text under every rotation, at a new letter each time.
        picked = {opts["ABCD".index(a)] for opts, a in zip(options, answers, strict=True)}
        assert len(picked) == 1 and len(set(answers)) == len(answers)
        assert questions[0].startswith(IMAGE_TOKEN) and IMAGE_TOKEN not in "".join(questions[1:])
    assert len(second_shifts) >= 3
    params = json.loads((root / "manifest.json").read_text())["params"]
    assert params["stage_splits"]["letters"]["circular"] is True


@pytest.mark.parametrize(
    ("splits", "error"),
    [
        (
            {"eval": {"n": 5, "tasks": {"ocr": 1}}},
            r"stage_splits.eval: 'eval' is a split of the mix",
        ),
        ({"read": {"n": 0, "tasks": {"ocr": 1}}}, r"stage_splits.read: expected .*got"),
        ({"read": {"n": 5, "tasks": {"nope": 1}}}, r"stage_splits.read: expected .*caption"),
        (
            {"read": {"n": 5, "tasks": {"ocr": 1}, "circular": "yes"}},
            r"stage_splits.read: expected .*circular: false\|true",
        ),
    ],
)
def test_a_malformed_stage_split_names_its_key(tmp_path: Path, splits, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        generate_instruction_mix(tmp_path, stage_splits=splits, **SMALL)


def test_the_tokenizer_corpus_covers_the_instructions() -> None:
    text = "\n".join(corpus(0, 60))
    assert SHORT_ANSWER_PROMPT in text and CHOICE_SUFFIX in text and "Context: " in text
