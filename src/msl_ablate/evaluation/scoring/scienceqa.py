"""ScienceQA-IMG scorer (``sqa_img``): multiple choice, questions with an image only.

Annotations, as released (``ScienceQA/data/scienceqa/``): ``problems.json``::

    {"5": {"question": "...", "choices": ["a", "b"], "answer": 1, "image": "image.png",
           "subject": "natural science", "split": "test", ...}, ...}

and ``pid_splits.json`` (``{"test": ["5", ...], "val": [...], ...}``) in the same directory. The
scorer takes the directory or the ``problems.json`` path.

Predictions: LLaVA answer file keyed by problem id. Only image questions of the chosen split are
scored; answers for other known problems (text-only, other splits) are ignored, not counted in
``n_predictions``. The chosen letter is parsed as LLaVA's ``eval_science_qa.py`` does, slightly
widened (see :func:`parse_choice`); unparseable answers count as wrong (``n_unparsed``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import load_json, require, write_json
from msl_ablate.evaluation.scoring.metrics import Unit, mean_metrics
from msl_ablate.evaluation.scoring.predictions import load_predictions

PROBLEMS_FILE = "problems.json"
SPLITS_FILE = "pid_splits.json"

_ANSWER_IS = re.compile(r"The answer is \(?([A-Z])\b\)?")
_LEADING = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.):](?=\s|$))")


def parse_choice(text: str, n_choices: int) -> int | None:
    """Parse the chosen option from a free-text answer.

    In order: the whole answer is one letter (``"B"``); exactly one ``"The answer is X"``
    (``"The answer is B."``, ``"The answer is (B)."``); a leading ``"(B)"``, ``"B."``, ``"B)"``
    or ``"B:"``. A letter beyond the number of choices is wrong, as in the official script.

    Args:
        text: Model answer.
        n_choices: Number of options of the problem.

    Returns:
        The 0-based option index, or None if no valid letter was found.
    """
    text = text.strip()
    letter: str | None = None
    if len(text) == 1 and text in string.ascii_uppercase:
        letter = text
    else:
        found = _ANSWER_IS.findall(text)
        if len(found) == 1:  # several contradicting statements are not an answer
            letter = found[0]
        else:
            match = _LEADING.match(text)
            if match:
                letter = match.group(1) or match.group(2)
    if letter is None:
        return None
    index = ord(letter) - ord("A")
    return index if index < n_choices else None


def _resolve(annotations: Path) -> tuple[Path, Path]:
    """Return (problems.json, pid_splits.json) for a directory or a problems.json path."""
    problems = annotations / PROBLEMS_FILE if annotations.is_dir() else annotations
    return problems, problems.with_name(SPLITS_FILE)


def sqa_img_units(
    annotations: Path | str, predictions: Path | str, *, split: str = "test"
) -> list[Unit]:
    """One unit per image problem of the split: the parsed choice right or not, its subject.

    Raises:
        ValueError: On malformed files, an unknown split, or a prediction for an unknown
            problem id.
    """
    problems_path, splits_path = _resolve(Path(annotations))
    problems = load_json(problems_path)
    splits = load_json(splits_path)
    if not isinstance(problems, dict):
        raise ValueError(f"{problems_path}: expected a JSON object keyed by problem id")
    if not isinstance(splits, dict) or split not in splits:
        known = sorted(splits) if isinstance(splits, dict) else []
        raise ValueError(f"{splits_path}: no split {split!r} (splits: {known})")
    preds = load_predictions(predictions)
    preds.check_known(problems.keys(), expected=f"a problem id of {problems_path.name}")

    units = []
    for pid in map(str, splits[split]):
        where = f"{problems_path}: problem {pid!r}"
        prob = problems.get(pid)
        if prob is None:
            raise ValueError(f"{splits_path}: split {split!r} lists unknown problem {pid!r}")
        if not require(prob, "image", where):
            continue  # sqa_img scores only problems with an image
        choices = require(prob, "choices", where)
        answer = require(prob, "answer", where)
        if not isinstance(choices, list) or not isinstance(answer, int):
            raise ValueError(f"{where}: expected 'choices' list and integer 'answer'")
        text = preds.texts.get(pid)
        chosen = None if text is None else parse_choice(text, len(choices))
        units.append(
            {
                "unit": pid,
                "score": float(chosen == answer),
                "groups": [prob.get("subject")],
                "answered": text is not None,
                "unparsed": text is not None and chosen is None,
            }
        )
    return units


def sqa_img_metrics(units: list[Unit]) -> dict[str, float | int]:
    """``score_sqa_img``'s metrics from its units (``sqa_img_units``)."""
    return {**mean_metrics(units), "n_unparsed": sum(1 for u in units if u["unparsed"])}


def score_sqa_img(
    annotations: Path | str, predictions: Path | str, *, split: str = "test"
) -> dict[str, float | int]:
    """Score a ScienceQA answer file on the image questions of one split.

    Args:
        annotations: Directory holding ``problems.json`` and ``pid_splits.json``, or the path
            of ``problems.json`` (``pid_splits.json`` must sit next to it).
        predictions: LLaVA answer file keyed by problem id.
        split: Key of ``pid_splits.json`` to score.

    Returns:
        ``accuracy`` and ``accuracy/<subject>`` (percent), ``n_questions`` (image questions in
        the split), ``n_predictions``, ``n_missing``, ``n_unparsed``.

    Raises:
        ValueError: On malformed files, an unknown split, or a prediction for an unknown
            problem id.
    """
    return sqa_img_metrics(sqa_img_units(annotations, predictions, split=split))


def write_scienceqa(directory: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``problems.json`` and ``pid_splits.json`` in the official ScienceQA format.

    Args:
        directory: Destination directory (created).
        records: Mappings with ``pid``, ``question``, ``choices`` (list), ``answer`` (index),
            optionally ``image`` (file name or None), ``subject`` and ``split`` (default
            ``"test"``).

    Returns:
        The path of ``problems.json``.

    Raises:
        ValueError: If a record lacks a key, repeats a pid or has an out-of-range answer.
    """
    directory = Path(directory)
    problems: dict[str, Any] = {}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for index, rec in enumerate(records):
        where = f"record {index}"
        pid = str(require(rec, "pid", where))
        choices = list(require(rec, "choices", where))
        answer = require(rec, "answer", where)
        if pid in problems:
            raise ValueError(f"{where}: duplicate pid {pid!r}")
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise ValueError(f"{where}: answer must index into choices, got {answer!r}")
        split = rec.get("split", "test")
        problems[pid] = {
            "question": require(rec, "question", where),
            "choices": choices,
            "answer": answer,
            "hint": rec.get("hint", ""),
            "image": rec.get("image"),
            "task": "closed choice",
            "grade": rec.get("grade", "grade5"),
            "subject": rec.get("subject", "natural science"),
            "topic": rec.get("topic", ""),
            "category": rec.get("category", ""),
            "skill": rec.get("skill", ""),
            "lecture": "",
            "solution": "",
            "split": split,
        }
        splits.setdefault(split, []).append(pid)
    write_json(directory / SPLITS_FILE, splits)
    return write_json(directory / PROBLEMS_FILE, problems)
