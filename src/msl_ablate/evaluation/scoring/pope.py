"""POPE scorer (object hallucination, yes/no; one question file per split).

Annotations: the released directory of ``coco_pope_<split>.json`` files (``adversarial``,
``popular``, ``random``), each JSON lines::

    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
     "text": "Is there a snowboard in the image?", "label": "yes"}

A single such file may be given instead of the directory (its split is the name between
``coco_pope_`` and the extension); it is then the whole annotation set, so answers for other
splits are unknown ids (use the directory and ``split=`` to score one split of a full answer
file). Question ids restart in every split, so

**predictions** are one LLaVA answer file for all splits whose ``question_id`` is
``"<split>/<question_id>"`` (see :func:`pope_question_id`), e.g. ``"adversarial/17"``; or, with
``questions=`` LLaVA's question file (``llava_pope_test.jsonl``: ``question_id``, ``image``,
``text`` with the prompt suffix, ``category`` = the split), the answer file LLaVA's
``model_vqa_loader.py`` writes for it, whose ids are that file's. Each of its questions is
matched to the split's question by image and text (the suffix after the first newline
dropped), not by line position as LLaVA's ``eval_pope.py`` does, so the answers' order does
not matter.

Parsing follows LLaVA's ``eval_pope.py``: keep the text before the first ``.``, drop commas,
split on spaces; if ``No``, ``no`` or ``not`` is a word the answer is "no", otherwise "yes".
Positive class is "yes". A missing prediction is an abstention: it is wrong (lowers accuracy and,
for a "yes" question, recall) but predicts neither class (not in precision or ``yes_ratio``'s
numerator).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msl_ablate.evaluation.scoring.files import (
    as_question_id,
    iter_jsonl,
    percent,
    require,
    write_jsonl,
)
from msl_ablate.evaluation.scoring.metrics import Unit, coverage
from msl_ablate.evaluation.scoring.predictions import Predictions, load_predictions

FILE_PREFIX = "coco_pope_"
SPLITS = ("adversarial", "popular", "random")
METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def pope_question_id(split: str, question_id: int | str) -> str:
    """Return the prediction id of a POPE question: ``"<split>/<question_id>"``."""
    return f"{split}/{question_id}"


def parse_yes_no(text: str) -> str:
    """Map a free-text answer to ``"yes"`` or ``"no"`` as LLaVA's ``eval_pope.py`` does.

    Args:
        text: Model answer, e.g. ``"Yes, there is a dog."``.

    Returns:
        ``"no"`` if the first sentence contains the word No/no/not, else ``"yes"``.
    """
    first = text.split(".")[0].replace(",", "")
    words = first.split(" ")  # the official script splits on single spaces only
    return "no" if {"No", "no", "not"} & set(words) else "yes"


def _split_files(annotations: Path) -> dict[str, Path]:
    """Map split name -> question file for a directory or a single file."""
    files = (
        sorted(annotations.glob(f"{FILE_PREFIX}*.json")) if annotations.is_dir() else [annotations]
    )
    if not files:
        raise ValueError(f"{annotations}: no {FILE_PREFIX}<split>.json files found")
    out = {}
    for path in files:
        name = path.name.split(".", 1)[0]
        out[name.removeprefix(FILE_PREFIX)] = path
    return out


def read_pope_split(path: Path | str) -> dict[str, str]:
    """Read one POPE question file.

    Args:
        path: JSON-lines file with ``question_id`` and ``label`` on every line.

    Returns:
        Question id -> label (``"yes"``/``"no"``), in file order.

    Raises:
        ValueError: On a malformed line, a bad label or a repeated question id.
    """
    labels: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid = as_question_id(require(obj, "question_id", where), where)
        label = require(obj, "label", f"{where}: question_id {qid!r}")
        if label not in ("yes", "no"):
            raise ValueError(f"{where}: question_id {qid!r}: label must be 'yes' or 'no'")
        if qid in labels:
            raise ValueError(f"{where}: duplicate question_id {qid!r}")
        labels[qid] = label
    return labels


def binary_metrics(labels: list[str], preds: list[str | None]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (positive = yes) and yes-ratio, in percent.

    Args:
        labels: Ground truth per question.
        preds: ``"yes"``, ``"no"`` or None (no prediction) per question.

    Returns:
        The five metrics; undefined ratios (e.g. precision with no "yes") are 0.
    """
    pairs = Counter(zip(labels, preds, strict=True))  # (truth, prediction) -> count
    tp, tn, fp = pairs["yes", "yes"], pairs["no", "no"], pairs["no", "yes"]
    n_pos = labels.count("yes")
    precision = percent(tp, tp + fp)
    recall = percent(tp, n_pos)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": percent(tp + tn, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": percent(preds.count("yes"), len(labels)),
    }


def _llava_answers(preds: Predictions, questions: Path, files: dict[str, Path]) -> Predictions:
    """An answer file keyed by LLaVA's question ids, re-keyed ``"<split>/<question_id>"``."""
    asked: dict[str, tuple[str, str, str]] = {}
    for lineno, obj in iter_jsonl(questions):
        where = f"{questions}:{lineno}"
        qid = as_question_id(require(obj, "question_id", where), where)
        fields = [str(require(obj, key, f"{where}: question_id {qid!r}"))
                  for key in ("category", "image", "text")]  # fmt: skip
        asked[qid] = (fields[0], fields[1], fields[2].split("\n")[0].strip())
    keys: dict[str, dict[tuple[str, str], str]] = {}
    for name, path in files.items():
        keys[name] = {}
        for lineno, obj in iter_jsonl(path):
            where = f"{path}:{lineno}"
            qid = as_question_id(require(obj, "question_id", where), where)
            image, text = (str(require(obj, k, where)) for k in ("image", "text"))
            keys[name][image, text.strip()] = qid
    out = Predictions(path=preds.path)
    for qid, text in preds.texts.items():
        where = f"{preds.path}:{preds.lines[qid]}: question_id {qid!r}"
        if qid not in asked:
            raise ValueError(f"{where} is not a question of {questions}")
        split, image, question = asked[qid]
        if split not in keys:
            raise ValueError(f"{where}: category {split!r} has no {FILE_PREFIX}{split}.json in "
                             f"the annotations ({sorted(keys)})")  # fmt: skip
        pope_qid = keys[split].get((image, question))
        if pope_qid is None:
            raise ValueError(f"{where}: no question of {FILE_PREFIX}{split}.json asks "
                             f"{question!r} about {image}")  # fmt: skip
        ours = pope_question_id(split, pope_qid)
        out.texts[ours], out.lines[ours] = text, preds.lines[qid]
    return out


def pope_units(
    annotations: Path | str,
    predictions: Path | str,
    *,
    split: str | None = None,
    questions: Path | str | None = None,
) -> list[Unit]:
    """One unit per question: its split, label and parsed answer (None without an answer).

    Raises:
        ValueError: On malformed files, an unknown split, or a prediction for an unknown id.
    """
    files = _split_files(Path(annotations))
    labels = {name: read_pope_split(path) for name, path in files.items()}
    preds = load_predictions(predictions)
    if questions is not None:
        preds = _llava_answers(preds, Path(questions), files)
    known = {pope_question_id(s, q) for s, split_labels in labels.items() for q in split_labels}
    preds.check_known(known, expected="'<split>/<question_id>' with split in " + str(sorted(files)))
    if split is not None and split not in labels:
        raise ValueError(f"{annotations}: no POPE split {split!r} (splits: {sorted(labels)})")
    units = []
    for name in [split] if split is not None else sorted(labels):
        for qid, label in labels[name].items():
            text = preds.texts.get(pope_question_id(name, qid))
            units.append(
                {
                    "unit": pope_question_id(name, qid),
                    "split": name,
                    "label": label,
                    "pred": None if text is None else parse_yes_no(text),
                }
            )
    return units


def pope_metrics(units: list[Unit]) -> dict[str, float | int]:
    """``score_pope``'s metrics from its units (``pope_units``)."""
    result: dict[str, float | int] = {}
    per_split = []
    for name in sorted({u["split"] for u in units}):
        in_split = [u for u in units if u["split"] == name]
        metrics = binary_metrics([u["label"] for u in in_split], [u["pred"] for u in in_split])
        per_split.append(metrics)
        result.update({f"{name}/{key}": value for key, value in metrics.items()})
        result[f"{name}/n_questions"] = len(in_split)
    for key in METRICS:
        result[key] = sum(m[key] for m in per_split) / len(per_split)
    answered = sum(1 for u in units if u["pred"] is not None)
    return result | coverage(len(units), answered)


def score_pope(
    annotations: Path | str,
    predictions: Path | str,
    *,
    split: str | None = None,
    questions: Path | str | None = None,
) -> dict[str, float | int]:
    """Score a POPE answer file.

    Args:
        annotations: Directory of ``coco_pope_<split>.json`` files, or one such file.
        predictions: LLaVA answer file with ids ``"<split>/<question_id>"`` (or, with
            ``questions``, the ids of that question file).
        split: Score only this split (answers for the other splits are ignored).
        questions: LLaVA's POPE question file (``llava_pope_test.jsonl``), whose ids the
            answer file uses.

    Returns:
        ``<split>/<metric>`` and ``<split>/n_questions`` per split, the unprefixed average of
        each metric over the splits, ``n_questions``, ``n_predictions``, ``n_missing``.

    Raises:
        ValueError: On malformed files, an unknown split, or a prediction for an unknown id.
    """
    return pope_metrics(pope_units(annotations, predictions, split=split, questions=questions))


def pope_headline(columns: Mapping[str, np.ndarray]) -> float:
    """``score_pope``'s headline (F1 averaged over the splits) from unit columns."""
    f1s = []
    for name in np.unique(columns["split"]):
        mask = columns["split"] == name
        label, pred = columns["label"][mask], columns["pred"][mask]
        tp = np.sum((label == "yes") & (pred == "yes"))
        precision = percent(tp, np.sum(pred == "yes"))
        recall = percent(tp, np.sum(label == "yes"))
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def write_pope(directory: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``coco_pope_<split>.json`` files (JSON lines) in the released POPE format.

    Args:
        directory: Destination directory (created).
        records: Mappings with ``split``, ``question_id``, ``label`` (``"yes"``/``"no"``),
            optionally ``text`` (question) and ``image``.

    Returns:
        The directory.

    Raises:
        ValueError: If a record lacks a key or has a bad label.
    """
    directory = Path(directory)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for index, rec in enumerate(records):
        where = f"record {index}"
        label = require(rec, "label", where)
        if label not in ("yes", "no"):
            raise ValueError(f"{where}: label must be 'yes' or 'no', got {label!r}")
        by_split.setdefault(str(require(rec, "split", where)), []).append(
            {
                "question_id": require(rec, "question_id", where),
                "image": rec.get("image", f"COCO_val2014_{index:012d}.jpg"),
                "text": rec.get("text", "Is there a dog in the image?"),
                "label": label,
            }
        )
    for name, rows in by_split.items():
        write_jsonl(directory / f"{FILE_PREFIX}{name}.json", rows)
    return directory
