"""Oracle answers: the right answer to every question, read back from official annotations.

Scoring the oracle must give every metric its maximum; that checks that a benchmark's files,
its question ids and its scorer agree (the suite's round-trip test, or a check of a real
benchmark release before evaluating models on it). The same answers give each benchmark's
blind baselines: every question answered with one of its most frequent right answers
(``frequent_answers``), the score a model that never looks at the image can reach; and chance,
every question answered with a uniform draw from what could be its answer (``guess_pools``).
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

from msl_ablate.evaluation.scoring.files import load_json
from msl_ablate.evaluation.scoring.gqa import read_gqa_questions
from msl_ablate.evaluation.scoring.mmbench import read_mmbench_tsv
from msl_ablate.evaluation.scoring.mme import mme_question_id, read_mme_gold
from msl_ablate.evaluation.scoring.pope import FILE_PREFIX, pope_question_id, read_pope_split
from msl_ablate.evaluation.scoring.scienceqa import PROBLEMS_FILE
from msl_ablate.evaluation.scoring.textvqa import read_textvqa_annotations
from msl_ablate.evaluation.scoring.vqav2 import read_vqav2_annotations


def _most_common(answers: tuple[str, ...]) -> str:
    return Counter(answers).most_common(1)[0][0]


def oracle_answers(scorer: str, annotations: Path | str) -> dict[str, str]:
    """The right answer to every question, keyed by the prediction id the scorer expects.

    Args:
        scorer: A key of ``SCORERS``.
        annotations: The annotations that scorer reads (file or folder).

    Returns:
        Question id -> answer text (VQA: the answer most annotators gave; multiple choice:
        the letter; yes/no: ``yes``/``no``).

    Raises:
        ValueError: Unknown scorer or malformed annotations.
    """
    path = Path(annotations)
    if scorer in ("vqav2", "textvqa"):
        read = read_vqav2_annotations if scorer == "vqav2" else read_textvqa_annotations
        return {q.question_id: _most_common(q.answers) for q in read(path)}
    if scorer == "gqa":
        return {q.question_id: q.answer for q in read_gqa_questions(path)}
    if scorer == "pope":
        files = sorted(path.glob(f"{FILE_PREFIX}*.json")) if path.is_dir() else [path]
        return {
            pope_question_id(f.name.split(".", 1)[0].removeprefix(FILE_PREFIX), qid): label
            for f in files
            for qid, label in read_pope_split(f).items()
        }
    if scorer == "mme":
        return {
            mme_question_id(category, image, k): answer
            for category, images in read_mme_gold(path).items()
            for image, answers in images.items()
            for k, answer in enumerate(answers)
        }
    if scorer == "sqa_img":
        problems = load_json(path / PROBLEMS_FILE if path.is_dir() else path)
        return {pid: string.ascii_uppercase[p["answer"]] for pid, p in problems.items()}
    if scorer == "mmbench":
        return {str(q.index): q.answer for q in read_mmbench_tsv(path)}
    raise ValueError(f"no oracle for scorer {scorer!r}")


def guess_pools(scorer: str, annotations: Path | str) -> dict[str, list[str]]:
    """What a uniform guess draws from, per question (the ``chance`` baseline).

    Multiple choice: the letters of that question's options. Yes/no and open answers: every
    distinct right answer of the benchmark (the answer space a guesser knows from the format).

    Returns:
        Question id (as ``oracle_answers``) -> candidate answers, sorted.
    """
    path = Path(annotations)
    if scorer == "sqa_img":
        problems = load_json(path / PROBLEMS_FILE if path.is_dir() else path)
        return {
            pid: list(string.ascii_uppercase[: len(p["choices"])]) for pid, p in problems.items()
        }
    if scorer == "mmbench":
        return {str(q.index): sorted(q.options) for q in read_mmbench_tsv(path)}
    answers = oracle_answers(scorer, annotations)
    pool = sorted(set(answers.values()))
    return dict.fromkeys(answers, pool)


def frequent_answers(scorer: str, annotations: Path | str, k: int = 3) -> list[str]:
    """The ``k`` most frequent right answers of a benchmark, most frequent first."""
    answers = oracle_answers(scorer, annotations)
    if not answers:
        raise ValueError(f"no questions in {annotations} for scorer {scorer!r}")
    return [answer for answer, _ in Counter(answers.values()).most_common(k)]
