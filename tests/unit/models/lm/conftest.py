"""Helpers shared by the LM tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from transformers import PreTrainedTokenizerBase

from msl_ablate.data.conversation import IGNORE_INDEX, TokenizedSample


def _target_texts(tok: PreTrainedTokenizerBase, sample: TokenizedSample) -> list[str]:
    """The decoded text of each run of labelled tokens, special tokens dropped."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tok.decode(r, skip_special_tokens=True).strip() for r in runs]


@pytest.fixture
def target_texts() -> Callable[[PreTrainedTokenizerBase, TokenizedSample], list[str]]:
    return _target_texts
