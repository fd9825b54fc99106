"""Strict reader for model answer files (LLaVA convention).

An answer file is JSON lines, one object per question::

    {"question_id": 17, "text": "Two dogs.", ...}

Other keys (``prompt``, ``model_id``, ...) are ignored. Question ids may be JSON ints or strings;
they are compared as strings, so ``17`` and ``"17"`` name the same question.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import as_question_id, iter_jsonl, require, write_jsonl


@dataclass
class Predictions:
    """Answers read from one file, remembering where each came from for error messages.

    Attributes:
        path: The answer file.
        texts: Question id -> predicted text, in file order.
        lines: Question id -> 1-based line number in ``path``.
    """

    path: Path
    texts: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def check_known(self, known_ids: Collection[str], *, expected: str = "") -> None:
        """Raise if any prediction names a question that does not exist.

        Args:
            known_ids: All question ids of the benchmark (every split, if it has several).
            expected: Optional hint on the id format, appended to the message.

        Raises:
            ValueError: For the first unknown id (file, line and id in the message).
        """
        for qid, lineno in self.lines.items():
            if qid not in known_ids:
                hint = f" (expected {expected})" if expected else ""
                raise ValueError(
                    f"{self.path}:{lineno}: question_id {qid!r} matches no question "
                    f"in the annotations{hint}"
                )

    def restricted_to(self, ids: Iterable[str]) -> dict[str, str]:
        """Return the predictions for the given ids only (those that have one)."""
        return {qid: self.texts[qid] for qid in ids if qid in self.texts}


def load_predictions(
    path: Path | str, key: Callable[[dict[str, Any], str, str], str] | None = None
) -> Predictions:
    """Read an answer file strictly.

    Args:
        path: JSON-lines file with ``question_id`` and ``text`` on every line.
        key: The id a line's answer is stored under, from the line's object, its question id
            (as a string) and its ``file:line`` (for messages; it may raise ValueError); None:
            the question id. MMBench's maps LLaVA's ``round_id`` to a circular copy.

    Returns:
        The predictions with their line numbers.

    Raises:
        ValueError: On a malformed line, a missing key, a non-string ``text`` or a duplicate
            ``question_id`` (or ``key``); the message names the file, the line and the id.
        OSError: If the file cannot be read.
    """
    path = Path(path)
    preds = Predictions(path=path)
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid = as_question_id(require(obj, "question_id", where), where)
        text = require(obj, "text", f"{where}: question_id {qid!r}")
        if not isinstance(text, str):
            raise ValueError(
                f"{where}: question_id {qid!r}: 'text' must be a string, got {type(text).__name__}"
            )
        stored = qid if key is None else key(obj, qid, where)
        if stored in preds.lines:
            read_as = f"read as {stored!r}, " if stored != qid else ""
            raise ValueError(
                f"{where}: duplicate question_id {qid!r} "
                f"({read_as}first on line {preds.lines[stored]})"
            )
        preds.texts[stored] = text
        preds.lines[stored] = lineno
    return preds


def iter_answers_with_prompts(path: Path) -> Iterator[tuple[int, str, str, str, str]]:
    """``(line, where, question_id, text, prompt)`` of each line of an answer file as LLaVA's
    ``model_vqa*.py`` writes it (``prompt``: the question as asked), ids not yet unique: the
    benchmarks whose LLaVA ids name an image (MME, TextVQA) match answers by their prompt.

    Raises:
        ValueError: A malformed line, or one without ``question_id``, ``text`` or ``prompt``.
    """
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid = as_question_id(require(obj, "question_id", where), where)
        text, prompt = (str(require(obj, key, f"{where}: question_id {qid!r}"))
                        for key in ("text", "prompt"))  # fmt: skip
        yield lineno, where, qid, text, prompt


def read_predictions(path: Path | str) -> dict[str, str]:
    """Read an answer file strictly and return question id -> predicted text.

    Args:
        path: JSON-lines file with ``question_id`` and ``text`` on every line.

    Returns:
        Mapping from question id (as a string) to the predicted text.

    Raises:
        ValueError: On a malformed line, a missing key or a duplicate ``question_id``.
        OSError: If the file cannot be read.
    """
    return load_predictions(path).texts


def write_predictions(path: Path | str, texts: dict[str, str]) -> Path:
    """Write an answer file in the LLaVA convention (used for tests and synthetic suites).

    Args:
        path: Destination JSON-lines file.
        texts: Question id -> predicted text.

    Returns:
        The destination path.
    """
    return write_jsonl(path, ({"question_id": qid, "text": t} for qid, t in texts.items()))
