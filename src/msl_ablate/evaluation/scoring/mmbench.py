"""MMBench scorer (circular evaluation over option rotations).

Annotations: the dev TSV (tab-separated, header row) with columns ``index``, ``question``,
``hint`` (optional), ``A``, ``B``, ``C``, ``D`` (unused options empty or ``nan``), ``answer``,
``category``, ``l2-category``; other columns (``image``, ...) are ignored. Circular copies of a
question, whose options are rotated, have index ``index + k * 1_000_000`` and share
``index % 1_000_000`` (the group); :func:`circular_copies` makes them. A TSV that holds none
(every index below 1_000_000: ``mmbench_dev_en_20231003.tsv``, the CN ones) is read with them
made, so circular accuracy means the same for both kinds.

Predictions: LLaVA answer file keyed by ``index``. A line with LLaVA's ``round_id`` (written by
``model_vqa_mmbench.py``, every round with ``--all-rounds``: round ``k`` shows the options rotated
``k`` times, as copy ``k`` does) answers the copy ``question_id + k * 1_000_000``; round 0 is the
row itself. A group is right only if every copy's parsed letter equals that copy's answer; a
missing or unparseable answer makes its group wrong.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from msl_ablate.evaluation.scoring.files import read_text, require, write_text_atomic
from msl_ablate.evaluation.scoring.metrics import Unit, coverage, summarize
from msl_ablate.evaluation.scoring.predictions import load_predictions

LETTERS = ("A", "B", "C", "D")
GROUP_MODULUS = 1_000_000
REQUIRED_COLUMNS = ("index", "question", "A", "B", "answer", "category", "l2-category")
_EMPTY = {"", "nan", "NaN"}  # how pandas writes a missing option


@dataclass(frozen=True)
class MMBenchQuestion:
    """One row (one rotation) of the TSV.

    Attributes:
        index: The row's index.
        options: Letter -> option text, for the options present.
        answer: Correct letter.
        category: Leaf ability category.
        l2_category: Level-2 category.
    """

    index: int
    options: dict[str, str]
    answer: str
    category: str
    l2_category: str


def parse_letter(text: str, options: Mapping[str, str]) -> str | None:
    """Parse the chosen letter from a free-text answer.

    In order: an answer that is just a letter (``"B"``, ``"(B)"``, ``"B."``); an answer equal to an
    option's text (ignoring case, surrounding space and a final period), so ``"A dog"`` is not
    read as letter A; the first standalone letter among the present options (``"B. cat"``,
    ``"The answer is B"``).

    Args:
        text: Model answer.
        options: Letter -> option text.

    Returns:
        The letter, or None if none can be found.
    """

    def canon(s: str) -> str:
        return s.strip().rstrip(".").strip().lower()

    bare = re.fullmatch(r"\(?([A-Z])\)?\.?", text.strip())
    if bare and bare.group(1) in options:
        return bare.group(1)
    for letter, option in options.items():
        if canon(text) == canon(option):
            return letter
    letters = "".join(options)
    match = re.search(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text) if letters else None
    return match.group(1) if match else None


def read_mmbench_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    """``(where, row)`` of each data row of an MMBench TSV, every column as text (``where``:
    file and line, for messages).

    Raises:
        ValueError: The header lacks a required column, or a row has a field too many or few.
    """
    # Real TSVs embed base64 images in one column, far beyond csv's default field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    out = []
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {missing}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if [c for c in REQUIRED_COLUMNS if row.get(c) is None] or None in row:
                raise ValueError(f"{where}: row does not have one field per header column")
            out.append((where, row))
    return out


def present_options(row: Mapping[str, Any]) -> dict[str, str]:
    """Letter -> text of the options a row has (pandas writes a missing one as ``nan``)."""
    return {k: row[k] for k in LETTERS if row.get(k) is not None and row[k].strip() not in _EMPTY}


def read_mmbench_tsv(path: Path | str) -> list[MMBenchQuestion]:
    """Read an MMBench TSV.

    Args:
        path: Tab-separated file with a header row.

    Returns:
        The rows, in file order; in a TSV without circular copies each row is followed by the
        copies :func:`circular_copies` makes of it (categories kept), as the scorer asks them.

    Raises:
        ValueError: On missing columns, a non-integer or repeated index, an answer that is
            not one of the present options, or options with a gap in a TSV without copies
            (message names file and line).
    """
    path = Path(path)
    rows: dict[int, MMBenchQuestion] = {}
    wheres: dict[int, str] = {}
    for where, row in read_mmbench_rows(path):
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: index must be an integer, got {row['index']!r}") from None
        where = f"{where}: index {index}"
        if index in rows:
            raise ValueError(f"{where}: duplicate index")
        options = present_options(row)
        answer = (row["answer"] or "").strip()
        if answer not in options:
            raise ValueError(f"{where}: answer {answer!r} is not one of {sorted(options)}")
        rows[index] = MMBenchQuestion(index, options, answer, row["category"], row["l2-category"])
        wheres[index] = where
    if any(index >= GROUP_MODULUS for index in rows):
        return list(rows.values())
    for index, q in rows.items():  # rotating "A, B, D" would invent an option C
        if list(q.options) != list(LETTERS[: len(q.options)]):
            raise ValueError(f"{wheres[index]}: options {list(q.options)} have a gap")
    # A copy takes its categories and option letters from its original ("of").
    records = circular_copies({"index": i, **q.options, "answer": q.answer, "of": q}
                              for i, q in rows.items())  # fmt: skip
    return [
        replace(
            r["of"],
            index=r["index"],
            answer=r["answer"],
            options={k: r[k] for k in r["of"].options},
        )
        for r in records
    ]


def round_key(rows: list[MMBenchQuestion]) -> Callable[[dict[str, Any], str, str], str]:
    """``load_predictions``'s key for LLaVA's ``round_id``: round ``k`` of question ``q`` is
    the copy ``q + k * 1_000_000``, round 0 (or none) the row ``q`` itself. The key raises
    ValueError (file, line and id) for a ``round_id`` that is not an integer >= 0 or a round
    the question lacks (only an original, index below 1_000_000, has rounds past 0)."""
    known = {str(r.index): r.index for r in rows}
    rounds = Counter(r.index % GROUP_MODULUS for r in rows)  # group -> its copies

    def key(obj: dict[str, Any], qid: str, where: str) -> str:
        k = obj.get("round_id", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(
                f"{where}: question_id {qid!r}: round_id must be an integer >= 0, got {k!r}"
            )
        if k == 0:
            return qid  # unknown ids are left to check_known, as without round_id
        index = known.get(qid)
        if index is None:
            raise ValueError(f"{where}: question_id {qid!r} matches no question in the TSV")
        n = rounds[index] if index < GROUP_MODULUS else 1
        if k >= n or str(index + k * GROUP_MODULUS) not in known:
            raise ValueError(
                f"{where}: question_id {qid!r}: round_id {k} is out of range "
                f"(the question has rounds 0..{n - 1})"
            )
        return str(index + k * GROUP_MODULUS)

    return key


def mmbench_units(annotations: Path | str, predictions: Path | str) -> list[Unit]:
    """One unit per question with its circular copies: right only if every copy is right.

    Raises:
        ValueError: On a malformed TSV, a prediction for an unknown index, or a duplicate or
            out-of-range ``(question_id, round_id)``.
    """
    rows = read_mmbench_tsv(annotations)
    preds = load_predictions(predictions, key=round_key(rows))
    preds.check_known({str(r.index) for r in rows}, expected="an index of the TSV")
    groups: dict[int, list[MMBenchQuestion]] = {}
    for row in rows:
        groups.setdefault(row.index % GROUP_MODULUS, []).append(row)
    units = []
    for group, copies in groups.items():
        right = all(
            (text := preds.texts.get(str(q.index))) is not None
            and parse_letter(text, q.options) == q.answer
            for q in copies
        )
        # The original (smallest index) carries the group's categories.
        first = min(copies, key=lambda q: q.index)
        units.append(
            {
                "unit": str(group),
                "score": float(right),
                "groups": [first.category, f"l2/{first.l2_category}"],
                "copies": len(copies),
                "copies_answered": sum(1 for q in copies if str(q.index) in preds.texts),
            }
        )
    return units


def mmbench_metrics(units: list[Unit]) -> dict[str, float | int]:
    """``score_mmbench``'s metrics from its units (``mmbench_units``)."""
    answered = sum(u["copies_answered"] for u in units)
    return {
        **summarize(((u["score"], u["groups"]) for u in units), name="circular_accuracy"),
        "n_groups": len(units),
        **coverage(sum(u["copies"] for u in units), answered),
    }


def score_mmbench(annotations: Path | str, predictions: Path | str) -> dict[str, float | int]:
    """Score an MMBench answer file with circular evaluation.

    Args:
        annotations: MMBench TSV, with its circular copies or without (then made here).
        predictions: LLaVA answer file keyed by ``index`` (and ``round_id``, if it has one).

    Returns:
        ``circular_accuracy``, ``circular_accuracy/<category>``,
        ``circular_accuracy/l2/<l2-category>`` (percent), ``n_groups``, ``n_questions``,
        ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: On a malformed TSV, a prediction for an unknown index, or a duplicate or
            out-of-range ``(question_id, round_id)``.
    """
    return mmbench_metrics(mmbench_units(annotations, predictions))


def circular_copies(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Add the rotated copies MMBench's circular evaluation uses.

    A question with ``n`` options gets ``n - 1`` copies; copy ``k`` has index
    ``index + k * 1_000_000`` and option ``letter[i]`` = original option ``letter[(i + k) % n]``.

    Args:
        records: Mappings with ``index``, ``A``.. (present options) and ``answer``.

    Returns:
        Originals followed by their copies, as new dicts.
    """
    out = []
    for rec in records:
        present = [k for k in LETTERS if rec.get(k) not in (None, "")]
        n = len(present)
        out.append(dict(rec))
        for k in range(1, n):
            copy = dict(rec)
            copy["index"] = int(rec["index"]) + k * GROUP_MODULUS
            for i in range(n):
                copy[LETTERS[i]] = rec[LETTERS[(i + k) % n]]
            copy["answer"] = LETTERS[(LETTERS.index(rec["answer"]) - k) % n]
            out.append(copy)
    return out


def write_mmbench(path: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records as an MMBench dev TSV (csv module, tab-delimited).

    Args:
        path: Destination TSV.
        records: Mappings with ``index``, ``question``, ``A``, ``B`` (``C``, ``D`` optional),
            ``answer``, ``category``, ``l2-category``, optionally ``hint``.

    Returns:
        The destination path.

    Raises:
        ValueError: If a record lacks a required key.
    """
    columns = ["index", "question", "hint", *LETTERS, "answer", "category", "l2-category"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for index, rec in enumerate(records):
        for key in REQUIRED_COLUMNS:
            require(rec, key, f"record {index}")
        writer.writerow(["" if rec.get(c) is None else rec.get(c) for c in columns])
    return write_text_atomic(path, buffer.getvalue())
