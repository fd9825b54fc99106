"""The headline metric of each benchmark: the number the paper's table reports.

Kept free of heavy imports: the results store and tables read it.
"""

from __future__ import annotations

# scorer -> (its headline metric, column label in the paper's table), in the table's order;
# a suite benchmark is named after its scorer. The held-out split comes first.
HEADLINE_METRICS: dict[str, tuple[str, str]] = {
    "exact_match": ("exact_match", "exact_match"),
    "vqav2": ("accuracy", "VQAv2"),
    "gqa": ("accuracy", "GQA"),
    "sqa_img": ("accuracy", "SQA-IMG"),
    "textvqa": ("accuracy", "TextVQA"),
    "pope": ("f1", "POPE"),  # F1 averaged over the adversarial, popular and random splits
    "mme": ("perception", "MME-P"),  # sum of the perception categories present
    "mmbench": ("circular_accuracy", "MMBench"),
}


def headline_column(stage: str, benchmark: str) -> str:
    """The metric name of a benchmark's headline, e.g. ``finetune/pope/f1``."""
    return f"{stage}/{benchmark}/{HEADLINE_METRICS[benchmark][0]}"
