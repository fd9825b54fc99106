"""VQA accuracy, shared by the VQAv2 and TextVQA scorers.

For a prediction and the 10 annotator answers, the official metric averages, over the 10 ways of
leaving one annotator out, ``min(1, matches / 3)`` where ``matches`` counts the remaining 9
answers equal to the prediction. Prediction and annotator answers are both normalised with
:func:`~msl_ablate.evaluation.scoring.normalize.normalize_answer` first, as LLaVA's TextVQA
evaluator does (and as the VQA server does whenever annotators disagree; LLaVA normalises VQAv2
predictions with the same processor before submission).

Worked example: 2 of 10 annotators said "dog". Leaving out one of those two leaves 1 match
(score 1/3); leaving out any of the other 8 leaves 2 matches (2/3). Mean: (2 * 1/3 + 8 * 2/3) / 10
= 0.6. With 3 agreeing annotators: (3 * 2/3 + 7 * 1) / 10 = 0.9; with 4 or more: 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from msl_ablate.evaluation.scoring.metrics import Unit
from msl_ablate.evaluation.scoring.normalize import normalize_answer
from msl_ablate.evaluation.scoring.predictions import Predictions

NUM_ANNOTATORS = 10  # both VQAv2 and TextVQA collect exactly 10 answers per question


@dataclass(frozen=True)
class VQAQuestion:
    """One question with its annotator answers.

    Attributes:
        question_id: Id as a string.
        answers: The annotator answers (raw; normalised when scoring).
        answer_type: Optional breakdown label (``"yes/no"``, ``"number"``, ``"other"``).
    """

    question_id: str
    answers: tuple[str, ...]
    answer_type: str | None = None


def vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """Score one prediction with the leave-one-annotator-out VQA accuracy.

    Args:
        prediction: Raw predicted answer.
        gt_answers: Raw annotator answers (normally 10).

    Returns:
        Accuracy in ``[0, 1]``.

    Raises:
        ValueError: If ``gt_answers`` is empty.
    """
    if not gt_answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    pred = normalize_answer(prediction)
    gts = [normalize_answer(answer) for answer in gt_answers]
    total = 0.0
    for left_out in range(len(gts)):
        matches = sum(1 for i, gt in enumerate(gts) if i != left_out and gt == pred)
        total += min(1.0, matches / 3.0)
    return total / len(gts)


def vqa_units(
    questions: Sequence[VQAQuestion], predictions: Predictions, *, expected_id: str = ""
) -> list[Unit]:
    """One unit per question: its VQA accuracy (0 without an answer) and answer type.

    Raises:
        ValueError: If a prediction's question id matches no question.
    """
    predictions.check_known({q.question_id for q in questions}, expected=expected_id)
    units = []
    for q in questions:
        text = predictions.texts.get(q.question_id)
        units.append(
            {
                "unit": q.question_id,
                "score": 0.0 if text is None else vqa_accuracy(text, q.answers),
                "groups": [q.answer_type],
                "answered": text is not None,
            }
        )
    return units
