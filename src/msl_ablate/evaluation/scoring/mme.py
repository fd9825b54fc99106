"""MME scorer (yes/no perception and cognition categories).

Annotations: a directory with one ``<category>.txt`` per category, as in MME's released
``eval_tool/Your_Results`` template; each line is ``image_name<TAB>question<TAB>Yes|No`` and
every image has exactly two questions.

**Predictions** are one LLaVA answer file whose ``question_id`` is
``"<category>/<image_name>/<k>"`` where ``k`` (0 or 1) is the position of the question among that
image's questions in file order; build it with :func:`mme_question_id`.

Or, as LLaVA evaluates MME: the annotations are the released benchmark folder
(``MME_Benchmark_release_version``: per category either ``images/`` with
``questions_answers_YN/<image stem>.txt``, or the images and their ``.txt`` side by side; each
``.txt`` two lines ``question<TAB>Yes|No``), and the predictions are the answer file LLaVA's
``model_vqa_loader.py`` writes for ``llava_mme.jsonl``: ``question_id`` is the image's path in
the folder (``code_reasoning/0020.png``, ``artwork/images/14777.jpg``), the same for both
questions of an image, and ``prompt`` the question with LLaVA's suffix. Each answer is matched
to its image's question by the prompt's first line, the released question without its
" Please answer yes or no." (what LLaVA's ``convert_answer_to_mme.py`` does).

Metrics follow MME's ``calculation.py``: per category ``acc`` (per question), ``acc_plus``
(images with both questions right) and ``score = acc + acc_plus`` (percent, max 200);
``perception`` / ``cognition`` sum the scores of those categories present (key omitted when none
is). An answer is "yes"/"no" if, lowercased, it is exactly that or its first 4 characters
contain "yes" (else "no"); anything else is "other" and counts as wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msl_ablate.evaluation.scoring.files import (
    percent,
    read_text,
    require,
    write_text_atomic,
)
from msl_ablate.evaluation.scoring.metrics import Unit
from msl_ablate.evaluation.scoring.predictions import (
    Predictions,
    iter_answers_with_prompts,
    load_predictions,
)

PERCEPTION = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
    "artwork", "OCR",
)  # fmt: skip
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
QUESTIONS_PER_IMAGE = 2


def mme_question_id(category: str, image: str, k: int) -> str:
    """Return the prediction id of the ``k``-th question (0 or 1) about ``image`` in ``category``."""
    return f"{category}/{image}/{k}"


def parse_yes_no(text: str) -> str:
    """Map an answer to ``"yes"``, ``"no"`` or ``"other"`` as MME's ``calculation.py`` does."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def read_mme_category(path: Path | str) -> dict[str, list[str]]:
    """Read one MME category file.

    Args:
        path: ``<category>.txt`` with ``image<TAB>question<TAB>Yes|No`` lines.

    Returns:
        Image name -> ground-truth answers (``"yes"``/``"no"``) in file order.

    Raises:
        ValueError: On a line without 3 tab-separated fields, a bad answer, or an image without
            exactly two questions (message names file and line/image).
    """
    path = Path(path)
    images: dict[str, list[str]] = {}
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(
                f"{path}:{lineno}: expected 'image<TAB>question<TAB>yes|no', "
                f"got {len(fields)} field(s)"
            )
        image, _, answer = fields
        answer = answer.strip().lower()
        if answer not in ("yes", "no"):
            raise ValueError(f"{path}:{lineno}: image {image!r}: answer must be Yes or No")
        images.setdefault(image, []).append(answer)
    for image, answers in images.items():
        if len(answers) != QUESTIONS_PER_IMAGE:
            raise ValueError(
                f"{path}: image {image!r} has {len(answers)} question(s), "
                f"expected {QUESTIONS_PER_IMAGE}"
            )
    return images


RELEASED_SUFFIX = " Please answer yes or no."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _question(text: str) -> str:
    """A question as both files can be matched on: LLaVA's prompt's first line, or the
    released question without MME's own suffix."""
    text = text.split("\n")[0].strip()
    return text.removesuffix(RELEASED_SUFFIX.strip()).strip()


def read_released_mme(root: Path) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """The released benchmark folder: category -> image path (relative to ``root``, as
    ``llava_mme.jsonl`` names it) -> its two ``(question, yes|no)``.

    Raises:
        ValueError: A question file without two ``question<TAB>Yes|No`` lines, or without its
            image (the message names the file).
    """
    gold: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        nested = folder / "questions_answers_YN"
        txts = sorted(nested.glob("*.txt")) if nested.is_dir() else sorted(folder.glob("*.txt"))
        images_at = folder / "images" if nested.is_dir() else folder
        for txt in txts:
            image = next((images_at / f"{txt.stem}{s}" for s in IMAGE_SUFFIXES
                          if (images_at / f"{txt.stem}{s}").is_file()), None)  # fmt: skip
            if image is None:
                raise ValueError(f"{txt}: no image {txt.stem}.png/.jpg in {images_at}")
            pairs = []
            for lineno, line in enumerate(read_text(txt).splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\r").split("\t")
                if len(fields) != 2 or fields[1].strip().lower() not in ("yes", "no"):
                    raise ValueError(f"{txt}:{lineno}: expected 'question<TAB>Yes|No'")
                pairs.append((_question(fields[0]), fields[1].strip().lower()))
            if len(pairs) != QUESTIONS_PER_IMAGE:
                raise ValueError(f"{txt}: {len(pairs)} questions, expected {QUESTIONS_PER_IMAGE}")
            gold.setdefault(folder.name, {})[image.relative_to(root).as_posix()] = pairs
    if not gold:
        raise ValueError(f"{root}: no category folders with question files")
    return gold


def _llava_answers(path: Path, gold: dict[str, dict[str, list[tuple[str, str]]]]) -> Predictions:
    """LLaVA's MME answer file (two lines per image id), keyed ``mme_question_id``."""
    images = {image: (cat, pairs) for cat, by_image in gold.items()
              for image, pairs in by_image.items()}  # fmt: skip
    out = Predictions(path=path)
    for lineno, where, qid, text, prompt in iter_answers_with_prompts(path):
        if qid not in images:
            raise ValueError(f"{where}: question_id {qid!r} is no image of the benchmark folder")
        cat, pairs = images[qid]
        asked = [k for k, (question, _) in enumerate(pairs) if question == _question(prompt)]
        if not asked:
            raise ValueError(f"{where}: question_id {qid!r}: the prompt {_question(prompt)!r} "
                             "is neither of its image's questions")  # fmt: skip
        ours = mme_question_id(cat, qid, asked[0])
        if ours in out.texts:
            raise ValueError(f"{where}: question_id {qid!r}: that question was answered on "
                             f"line {out.lines[ours]} already")  # fmt: skip
        out.texts[ours], out.lines[ours] = text, lineno
    return out


def read_mme_gold(directory: Path) -> dict[str, dict[str, list[str]]]:
    """Category -> image -> its two answers, from a folder of ``<category>.txt`` files or
    from the released benchmark folder (image paths as LLaVA's question file names them).

    Raises:
        ValueError: Not a folder, or malformed files.
    """
    if not directory.is_dir():
        raise ValueError(f"{directory}: expected a directory of <category>.txt files or the "
                         "released MME_Benchmark_release_version folder")  # fmt: skip
    files = sorted(directory.glob("*.txt"))
    if files:
        return {path.stem: read_mme_category(path) for path in files}
    return {cat: {image: [answer for _, answer in pairs] for image, pairs in by_image.items()}
            for cat, by_image in read_released_mme(directory).items()}  # fmt: skip


def mme_units(annotations: Path | str, predictions: Path | str) -> list[Unit]:
    """One unit per image: its category, questions asked, answered, right, and other answers.

    Raises:
        ValueError: On malformed files or a prediction for an unknown id.
    """
    directory = Path(annotations)
    gold = read_mme_gold(directory)
    if any(directory.glob("*.txt")):
        preds = load_predictions(predictions)
    else:  # the released benchmark folder, with LLaVA's answer file
        preds = _llava_answers(Path(predictions), read_released_mme(directory))
    known = {
        mme_question_id(cat, image, k)
        for cat, images in gold.items()
        for image, answers in images.items()
        for k in range(len(answers))
    }
    preds.check_known(known, expected="'<category>/<image>/<0|1>'")
    units = []
    for cat, images in gold.items():
        for image, answers in images.items():
            texts = [preds.texts.get(mme_question_id(cat, image, k)) for k in range(len(answers))]
            parsed = [None if t is None else parse_yes_no(t) for t in texts]
            units.append(
                {
                    "unit": f"{cat}/{image}",
                    "category": cat,
                    "asked": len(answers),
                    "answered": sum(1 for t in texts if t is not None),
                    "right": sum(1 for p, truth in zip(parsed, answers, strict=True) if p == truth),
                    "other": parsed.count("other"),
                }
            )
    return units


def category_scores(
    category: np.ndarray, asked: np.ndarray, right: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Category -> (acc, acc+) in percent, from per-image question and right counts."""
    scores = {}
    for cat in np.unique(category):
        mask = category == cat
        acc = percent(right[mask].sum(), asked[mask].sum())
        scores[str(cat)] = (acc, percent(np.sum(right[mask] == asked[mask]), mask.sum()))
    return scores


def mme_metrics(units: list[Unit]) -> dict[str, float | int]:
    """``score_mme``'s metrics from its units (``mme_units``)."""
    columns = {k: np.array([u[k] for u in units]) for k in ("category", "asked", "right")}
    result: dict[str, float | int] = {}
    for cat, (acc, acc_plus) in category_scores(**columns).items():
        result.update(
            {f"{cat}/acc": acc, f"{cat}/acc_plus": acc_plus, f"{cat}/score": acc + acc_plus}
        )
    for name, group in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [cat for cat in group if f"{cat}/score" in result]
        if present:
            result[name] = sum(result[f"{cat}/score"] for cat in present)
    n_questions = sum(u["asked"] for u in units)
    answered = sum(u["answered"] for u in units)
    return result | {
        "n_questions": n_questions,
        "n_predictions": answered,
        "n_missing": n_questions - answered,
        "n_other": sum(u["other"] for u in units),
    }


def score_mme(annotations: Path | str, predictions: Path | str) -> dict[str, float | int]:
    """Score an MME answer file.

    Args:
        annotations: Directory of ``<category>.txt`` ground-truth files.
        predictions: LLaVA answer file with ids from :func:`mme_question_id`.

    Returns:
        ``<category>/acc``, ``<category>/acc_plus``, ``<category>/score``, ``perception`` and
        ``cognition`` (when present), ``n_questions``, ``n_predictions``, ``n_missing``,
        ``n_other`` (answers that are neither yes nor no).

    Raises:
        ValueError: On malformed files or a prediction for an unknown id.
    """
    return mme_metrics(mme_units(annotations, predictions))


def mme_headline(columns: Mapping[str, np.ndarray]) -> float:
    """``score_mme``'s headline (perception: the sum of acc + acc+ over its categories)."""
    scores = category_scores(columns["category"], columns["asked"], columns["right"])
    return float(sum(sum(scores[cat]) for cat in PERCEPTION if cat in scores))


def write_mme(directory: Path | str, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``<category>.txt`` ground-truth files in MME's released layout.

    Args:
        directory: Destination directory (created).
        records: Mappings with ``category``, ``image``, ``question`` and ``answer``
            (``"yes"``/``"no"``, any case); two records per image, in question order.

    Returns:
        The directory.

    Raises:
        ValueError: If a record lacks a key, has a bad answer or contains a tab/newline.
    """
    directory = Path(directory)
    lines: dict[str, list[str]] = {}
    for index, rec in enumerate(records):
        where = f"record {index}"
        fields = [str(require(rec, key, where)) for key in ("image", "question", "answer")]
        if any(ch in f for f in fields for ch in "\t\r\n"):
            raise ValueError(f"{where}: image, question and answer must not contain tabs/newlines")
        if fields[2].lower() not in ("yes", "no"):
            raise ValueError(f"{where}: answer must be yes or no, got {fields[2]!r}")
        fields[2] = fields[2].capitalize()  # the release writes "Yes"/"No"
        lines.setdefault(str(require(rec, "category", where)), []).append("\t".join(fields))
    for cat, rows in lines.items():
        write_text_atomic(directory / f"{cat}.txt", "".join(row + "\n" for row in rows))
    return directory
