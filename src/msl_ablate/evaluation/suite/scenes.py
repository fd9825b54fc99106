"""A suite benchmark's unit: one image (its scene) and what is asked about it.

A suite benchmark is a list of :class:`Item` values, built from ``Scene`` data only by the
question writers of ``data/benchmark_questions.py`` and the facts of ``data/facts.py``;
``generate.py`` renders the images and writes the official files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msl_ablate.data.world import Scene


@dataclass
class Item:
    """One image of a benchmark and what is written about it.

    Attributes:
        image: File name under the benchmark's ``images/`` folder.
        scene: The scene to render (None for a text-only question, e.g. ScienceQA).
        questions: LLaVA question lines ``{"question_id", "image", "text"}``.
        annotations: Records for the benchmark's ``write_*`` function in the scoring package.
    """

    image: str | None
    scene: Scene | None
    questions: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
