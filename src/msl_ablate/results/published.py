"""Published numbers of the reference study, as facts (../shared/reference/mipha-facts.md: the
README of zhuyiche/llava-phi), for `paper`-scale tables. Labelled as published wherever shown."""

from __future__ import annotations

SOURCE = "Mipha README (zhuyiche/llava-phi)"
# Row name -> table column -> published value (MME-P: perception sum; the others in percent).
PUBLISHED: dict[str, dict[str, float]] = {
    "Mipha-3B": {"VQAv2": 81.3, "GQA": 63.9, "SQA-IMG": 70.9, "TextVQA": 56.6, "POPE": 86.7,
                 "MME-P": 1488.9, "MMBench": 69.7},
    "Mipha-2.4B": {"VQAv2": 79.5, "GQA": 63.3, "SQA-IMG": 65.3, "TextVQA": 52.4, "POPE": 86.6,
                   "MME-P": 1397.1, "MMBench": 59.4},
    "Mipha-1.6B": {"VQAv2": 77.5, "GQA": 62.7, "SQA-IMG": 58.3, "TextVQA": 45.6, "POPE": 86.9,
                   "MME-P": 1203.1, "MMBench": 57.7},
}  # fmt: skip
