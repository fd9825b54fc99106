"""The card written beside each zoo checkpoint: recipe, budget, losses, and proof it learned."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from msl_ablate.utils.files import read_json, write_json_atomic

CARD = "card.json"


@dataclass
class Score:
    """A number that shows a checkpoint learned, beside the same number for a random init.

    Attributes:
        name: What was measured, e.g. ``linear_probe_accuracy/count`` or ``heldout_perplexity``.
        value: The pretrained checkpoint's score.
        random_init: The score of the model it is compared with: a randomly initialised model
            of the same shape, or the model a tuned variant started from (``against``).
        higher_is_better: Whether a larger value is better (accuracy) or worse (perplexity).
        against: What ``random_init`` was measured on (``random init``, a zoo member's name).
        guard: A number that must not get worse than its baseline, rather than beat it (a safe
            variant's refusal rate on benign questions; answers in the template when the
            starting model already had them): a check, not the proof of learning.
    """

    name: str
    value: float
    random_init: float
    higher_is_better: bool = True
    against: str = "random init"
    guard: bool = False

    @property
    def learned(self) -> bool:
        """Whether the checkpoint beats its baseline (a guard: is not worse than it)."""
        if self.guard and self.value == self.random_init:
            return True
        better = self.value > self.random_init
        return better if self.higher_is_better else self.value < self.random_init


@dataclass
class Card:
    """What a zoo checkpoint is and how it was made (``card.json``).

    Attributes:
        name: The recipe's name (``tiny_siglip_64``, ``tiny_phi_sft``...).
        kind: ``vision`` or ``lm``.
        objective: The pretraining objective (``siglip``, ``causal_lm``, ``dpo``...).
        recipe: The recipe as configured (what the cache key hashes).
        steps: Optimisation steps taken.
        seed: The seed of initialisation and data.
        losses: Training loss, sampled along the run (first, ..., last).
        build_seconds: Wall time of the build.
        scores: Proof that it learned, each against a random init of the same shape.
        parent: The checkpoint it started from (variants of a base LM), or None.
        tuning: ``base``, ``sft``, ``rlhf``, ``dpo``, ``safe_rlhf`` for LMs (``config/enums.py``);
            None for encoders.
    """

    name: str
    kind: str
    objective: str
    recipe: dict[str, Any]
    steps: int
    seed: int
    losses: list[float]
    build_seconds: float
    scores: list[Score] = field(default_factory=list)
    parent: str | None = None
    tuning: str | None = None


def write_card(out_dir: str | Path, card: Card) -> Path:
    """Write ``card.json`` into a checkpoint folder (atomically)."""
    path = Path(out_dir) / CARD
    write_json_atomic(path, asdict(card))
    return path


def read_card(checkpoint_dir: str | Path) -> Card | None:
    """The card of a zoo checkpoint, or None for a folder without one (a random twin)."""
    path = Path(checkpoint_dir) / CARD
    if not path.is_file():
        return None
    data = read_json(path)
    data["scores"] = [Score(**s) for s in data.get("scores", [])]
    return Card(**data)


def sample_losses(losses: list[float], k: int = 20) -> list[float]:
    """About ``k`` evenly spaced losses of a run, first and last included, rounded."""
    if len(losses) <= k:
        picked = losses
    else:
        idx = sorted({round(i * (len(losses) - 1) / (k - 1)) for i in range(k)})
        picked = [losses[i] for i in idx]
    return [round(float(x), 5) for x in picked]


class Stopwatch:
    """Wall time since creation (``build_seconds`` of a card)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self._start, 2)
