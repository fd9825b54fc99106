"""Official benchmark scorers (VQAv2, TextVQA, GQA, ScienceQA-IMG, POPE, MME, MMBench).

Use :data:`~msl_ablate.evaluation.scoring.benchmarks.SCORERS` or
:func:`~msl_ablate.evaluation.scoring.benchmarks.score`; ``cli.main`` is ``msl-ablate score``.
"""

from msl_ablate.evaluation.scoring.benchmarks import SCORERS, score
from msl_ablate.evaluation.scoring.normalize import normalize_answer
from msl_ablate.evaluation.scoring.predictions import read_predictions
from msl_ablate.evaluation.scoring.vqa_accuracy import vqa_accuracy

__all__ = ["SCORERS", "normalize_answer", "read_predictions", "score", "vqa_accuracy"]
