"""The miniature benchmark suite: seven benchmarks (and MM-Vet) in their official formats.

Drawn from the scene world (``data/world.py``) and written with the scoring package's
``write_*`` functions, so the same evaluation and scorers run on it as on the real releases.
``generate_suite`` is the ``_target_`` of ``conf/benchmarks/synthetic_suite.yaml``.
"""

from msl_ablate.evaluation.suite.generate import (
    BENCHMARKS,
    annotations_path,
    generate_suite,
    question_file,
)

__all__ = ["BENCHMARKS", "annotations_path", "generate_suite", "question_file"]
