"""Strict file helpers shared by the scorers: JSON / JSON-lines reading and atomic writes.

Every error is a ``ValueError`` whose message starts with the file path and, where it applies,
the line number, so a user can go straight to the offending record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from msl_ablate.utils.files import write_text_atomic

__all__ = ["write_text_atomic"]  # re-exported: the scorers' writers use the shared one


def read_text(path: Path | str) -> str:
    """Read a UTF-8 text file, naming the file if it is not UTF-8.

    Args:
        path: File to read.

    Returns:
        The file's text.

    Raises:
        ValueError: If the file is not valid UTF-8.
        OSError: If the file cannot be read.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a BOM (Excel-saved TSVs)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte offset {err.start})") from None


def load_json(path: Path | str) -> Any:
    """Load a whole JSON file.

    Args:
        path: File to read.

    Returns:
        The decoded JSON value.

    Raises:
        ValueError: If the file is not valid JSON (message names file, line and column).
        OSError: If the file cannot be read.
    """
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}:{err.lineno}: invalid JSON at column {err.colno}: {err.msg}"
        ) from None


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file.

    Args:
        path: File to read; line numbers start at 1.

    Yields:
        The 1-based line number and the decoded JSON object.

    Raises:
        ValueError: If a line is not valid JSON or not a JSON object.
        OSError: If the file cannot be read.
    """
    path = Path(path)
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and friends.
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue  # tolerate blank lines (e.g. a trailing newline)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}:{lineno}: invalid JSON at column {err.colno}: {err.msg}"
            ) from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def require(record: Mapping[str, Any], key: str, where: str) -> Any:
    """Return ``record[key]`` or raise a ValueError naming where the record is.

    Args:
        record: The record (JSON object) to read from.
        key: Required key.
        where: Location prefix for the message, e.g. ``"file.json: record 3"``.

    Returns:
        The value stored under ``key``.

    Raises:
        ValueError: If ``record`` is not a mapping or lacks ``key``.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise ValueError(f"{where}: missing required key {key!r}")
    return record[key]


def as_question_id(value: Any, where: str) -> str:
    """Normalise a question id (JSON int or string) to ``str``.

    Args:
        value: The raw id.
        where: Location prefix for the error message.

    Returns:
        The id as a string (``17`` and ``"17"`` are the same question).

    Raises:
        ValueError: If the id is neither an int nor a non-empty string.
    """
    # bool is an int subclass; a true/false id is certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise ValueError(f"{where}: question id must be an int or non-empty string, got {value!r}")
    return str(value)


def percent(numerator: float, denominator: float) -> float:
    """Return ``100 * numerator / denominator``, or 0.0 for an empty denominator."""
    return 100.0 * numerator / denominator if denominator else 0.0


def write_json(path: Path | str, obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON atomically (temp file in the same directory + ``os.replace``).

    Args:
        path: Destination; parent directories are created.
        obj: JSON-serialisable value.
        indent: Passed to ``json.dumps``.

    Returns:
        The destination path.
    """
    text = json.dumps(obj, indent=indent, sort_keys=indent is not None, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write one JSON object per line, atomically.

    Args:
        path: Destination; parent directories are created.
        records: JSON-serialisable mappings.

    Returns:
        The destination path.
    """
    lines = [json.dumps(dict(rec), ensure_ascii=False) + "\n" for rec in records]
    return write_text_atomic(path, "".join(lines))
