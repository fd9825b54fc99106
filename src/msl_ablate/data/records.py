"""LLaVA-format records as released (``blip_laion_cc_sbu_558k.json``, ``llava_v1_5_mix665k.json``):
read, normalised and checked, every problem named with its record.

A record is ``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, ...]}``.
As released: ids are strings or integers; text-only records have no ``image``; ``<image>`` sits
at the start or the end of the first human turn, with or without a newline, and a few image
records lack it. Normalised as LLaVA's ``preprocess_multimodal`` does: the placeholder is moved
to the start of its turn as ``<image>\\n``, and prepended to the first human turn where missing.

Problems and what they stop:
- errors (a training refuses to start on them unless ``data.on_error: skip``): ``malformed``
  (a missing id or conversation, a turn that is not ``{"from": human|gpt|..., "value": str}``,
  no gpt turn, several ``<image>``, ``<image>`` in a text-only record), ``missing_image``,
  ``wrong_extension`` (the file is there under another extension: OCR-VQA's downloads),
  ``unreadable_image`` (``msl-ablate data check`` opens every image's header; training does not);
- warnings: ``duplicate_id`` (each copy trains), ``format_mismatch`` (a ``.jpg`` that is a GIF:
  PIL reads it by its content).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from msl_ablate.data.conversation import ROLES
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.utils.errors import DataError

ERROR_KINDS = ("malformed", "missing_image", "wrong_extension", "unreadable_image")
WARNING_KINDS = ("duplicate_id", "format_mismatch")
# PIL's format names for the extensions a released file names.
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF",
                     ".bmp": "BMP", ".webp": "WEBP"}  # fmt: skip


@dataclass(frozen=True)
class RecordProblem:
    """One problem of one record: ``kind`` (see the module docstring), the record's id (or
    ``#<index>`` without one) and what is wrong."""

    kind: str
    record: str
    detail: str

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS

    def __str__(self) -> str:
        return f"record {self.record}: {self.detail}"


def read_json_records(json_path: str | Path) -> list[Any]:
    """The JSON list of a data file.

    Raises:
        FileNotFoundError: The file does not exist.
        DataError: Not valid JSON, or not a list.
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"data file not found: {json_path}")
    try:
        records = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{json_path}: not valid JSON ({err})") from err
    if not isinstance(records, list):
        raise DataError(
            f"{json_path}: expected a JSON list of records, got {type(records).__name__}"
        )
    return records


def record_name(rec: Any, index: int) -> str:
    rid = rec.get("id") if isinstance(rec, dict) else None
    return str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else f"#{index}"


def normalize(rec: Any) -> dict[str, Any]:
    """The record with its ``<image>`` placed as LLaVA places it (a new dict; turns copied).

    Raises:
        ValueError: The record is malformed (the message says how).
    """
    if not isinstance(rec, dict):
        raise ValueError(f"is a {type(rec).__name__}, not an object")
    rid = rec.get("id")
    if rid is None or isinstance(rid, bool) or not isinstance(rid, str | int):
        raise ValueError("needs an 'id' (a string or an integer)")
    turns = rec.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError("needs 'conversations', a non-empty list of turns")
    for i, turn in enumerate(turns):
        if (not isinstance(turn, dict) or turn.get("from") not in ROLES
                or not isinstance(turn.get("value"), str)):  # fmt: skip
            raise ValueError(
                f"turn {i} must be {{'from': one of {sorted(ROLES)}, 'value': a string}}, "
                f"got {turn!r:.200}"
            )
    if not any(ROLES[t["from"]] == "assistant" for t in turns):
        raise ValueError("has no gpt turn: nothing to learn from")
    image = rec.get("image")
    if image is not None and not isinstance(image, str):
        raise ValueError(f"'image' must be a path string, got {image!r:.100}")
    placed = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if image is None and placed:
        raise ValueError(f"has no image but {placed} '{IMAGE_TOKEN}' in its turns")
    if placed > 1:
        raise ValueError(f"has {placed} '{IMAGE_TOKEN}'; one image per record is supported")
    turns = [dict(t) for t in turns]
    if image is not None:
        users = [t for t in turns if ROLES[t["from"]] == "user"]
        if not users:
            raise ValueError("has an image but no human turn to put it in")
        with_image = next((t for t in turns if IMAGE_TOKEN in t["value"]), users[0])
        text = with_image["value"].replace(IMAGE_TOKEN, "").strip()
        with_image["value"] = f"{IMAGE_TOKEN}\n{text}"
    return {**rec, "conversations": turns}


def image_problem(rec: dict[str, Any], name: str, image_dir: Path,
                  open_image: bool = False) -> RecordProblem | None:  # fmt: skip
    """What is wrong with a record's image file, if anything (None: no image, or fine)."""
    if rec.get("image") is None:
        return None
    path = image_dir / rec["image"]
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob(f"{path.stem}.*") if p.is_file())
        if others:
            return RecordProblem("wrong_extension", name,
                                 f"image {path} not found; the folder has {', '.join(others)}")  # fmt: skip
        return RecordProblem("missing_image", name, f"image file not found: {path}")
    if not open_image:
        return None
    try:
        with Image.open(path) as image:  # reads the header only
            found = image.format
    except (UnidentifiedImageError, OSError) as err:
        return RecordProblem("unreadable_image", name, f"image {path} cannot be read ({err})")
    expected = EXTENSION_FORMATS.get(path.suffix.lower())
    if expected is not None and found is not None and found != expected:
        return RecordProblem("format_mismatch", name,
                             f"image {path} is a {found} file, not {expected}")  # fmt: skip
    return None


def check_records(
    raw: Iterable[Any], image_dir: Path, open_images: bool = False
) -> tuple[list[dict[str, Any]], list[RecordProblem]]:
    """Normalise and check records.

    Returns:
        The records without an error (normalised, in file order) and every problem found.
    """
    records, problems, seen = [], [], Counter()
    for index, rec in enumerate(raw):
        name = record_name(rec, index)
        try:
            fixed = normalize(rec)
        except ValueError as err:
            problems.append(RecordProblem("malformed", name, str(err)))
            continue
        problem = image_problem(fixed, name, image_dir, open_images)
        if problem is not None:
            problems.append(problem)
            if problem.is_error:
                continue
        seen[str(fixed["id"])] += 1
        if seen[str(fixed["id"])] == 2:
            problems.append(RecordProblem("duplicate_id", name, "its id is used by more records"))
        records.append(fixed)
    return records, problems


def summarize(problems: list[RecordProblem], limit: int = 5) -> str:
    """The first ``limit`` problems, and how many more."""
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(map(str, problems[:limit])) + more


def load_records(
    json_path: str | Path, image_dir: str | Path, on_error: str = "error"
) -> list[dict[str, Any]]:
    """Read, normalise and check a LLaVA data file (``load_checked_records`` +
    ``skipped_errors``): the records without errors."""
    records, problems = load_checked_records(json_path, image_dir)
    skipped_errors(json_path, problems, on_error)
    return records


def load_checked_records(
    json_path: str | Path, image_dir: str | Path
) -> tuple[list[dict[str, Any]], list[RecordProblem]]:
    """The records without errors (normalised) and every problem of the file.

    Raises:
        FileNotFoundError: The JSON file does not exist.
        DataError: Not valid JSON, or not a list.
    """
    return check_records(read_json_records(json_path), Path(image_dir))


def skipped_errors(
    json_path: str | Path, problems: list[RecordProblem], on_error: str
) -> list[RecordProblem]:
    """The errors among ``problems``, which ``on_error=skip`` leaves out of training.

    Raises:
        DataError: There are errors and ``on_error`` is ``error`` (the first few named).
        ValueError: ``on_error`` is neither ``error`` nor ``skip``.
    """
    if on_error not in ("error", "skip"):
        raise ValueError(f"data.on_error must be 'error' or 'skip', got {on_error!r}")
    errors = [p for p in problems if p.is_error]
    if errors and on_error == "error":
        raise DataError(
            f"{json_path}: {len(errors)} records cannot be trained on: {summarize(errors)}. "
            "`msl-ablate data check` lists them all; data.on_error=skip trains without them"
        )
    return errors
