"""Strict answer-file reader."""

from pathlib import Path

import pytest

from msl_ablate.evaluation.scoring.predictions import load_predictions, read_predictions


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_ids_as_strings_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "answers.jsonl",
        '{"question_id": 17, "text": "Two", "prompt": "x"}\n\n{"question_id": "a/1", "text": ""}\n',
    )
    assert read_predictions(path) == {"17": "Two", "a/1": ""}
    assert load_predictions(path).lines == {"17": 1, "a/1": 3}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"question_id": 1, "text": "a"}\n{"question_id": 2, "text": \n', ":2: invalid JSON"),
        ('{"question_id": 1, "text": "a"}\n[1, 2]\n', ":2: expected a JSON object"),
        ('{"question_id": 1}\n', "answers.jsonl:1: question_id '1': missing required key 'text'"),
        ('{"text": "a"}\n', ":1: missing required key 'question_id'"),
        ('{"question_id": 1, "text": 3}\n', ":1: question_id '1': 'text' must be a string"),
        ('{"question_id": null, "text": "a"}\n', ":1: question id must be"),
        (
            '{"question_id": 5, "text": "a"}\n{"question_id": "5", "text": "b"}\n',
            "answers.jsonl:2: duplicate question_id '5' (first on line 1)",
        ),
    ],
)
def test_malformed_answer_files_name_file_and_line(
    tmp_path: Path, content: str, needle: str
) -> None:
    path = _write(tmp_path / "answers.jsonl", content)
    with pytest.raises(ValueError) as info:
        read_predictions(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_id_names_file_line_and_id(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "answers.jsonl",
        '{"question_id": 1, "text": "a"}\n{"question_id": 99, "text": "b"}\n',
    )
    with pytest.raises(ValueError, match=r"answers\.jsonl:2: question_id '99' matches no question"):
        load_predictions(path).check_known({"1", "2"})


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"question_id": 1, "text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl: not UTF-8"):
        read_predictions(path)
