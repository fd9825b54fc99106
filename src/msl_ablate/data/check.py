"""``msl-ablate data check``'s work: every record of a split read, checked and tokenized.

Each record is normalised and checked (``data.records``: malformed records, missing, misnamed
and unreadable images, duplicate ids) with every image's header opened, then tokenized with the
LM's tokenizer and chat template into the token cache (``data.token_cache``), which training
then reads instead of tokenizing again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from msl_ablate.data.records import (
    ERROR_KINDS,
    WARNING_KINDS,
    RecordProblem,
    check_records,
    read_json_records,
)
from msl_ablate.data.token_cache import TokenTable, cached_table


@dataclass
class SplitCheck:
    """What ``check_split`` found in one split."""

    split: str
    path: Path
    records: int = 0  # in the file
    usable: int = 0  # without errors
    with_image: int = 0
    text_only: int = 0
    turns: Counter = field(default_factory=Counter)  # turns per usable record -> records
    problems: list[RecordProblem] = field(default_factory=list)
    lengths: np.ndarray | None = None  # tokens per usable record (None: not tokenized)
    max_length: int | None = None

    @property
    def errors(self) -> list[RecordProblem]:
        return [p for p in self.problems if p.is_error]

    @property
    def too_long(self) -> int:
        if self.lengths is None or self.max_length is None:
            return 0
        return int((self.lengths > self.max_length).sum())


def check_split(
    split: str,
    path: Path,
    image_dir: Path,
    tokenize: Callable[[list[dict[str, Any]]], TokenTable] | None,
    max_length: int | None,
) -> SplitCheck:
    """Read, check and (with ``tokenize``) tokenize one split's file.

    Args:
        split: The split's name (``data.files``).
        path: Its JSON file.
        image_dir: The folder its ``image`` paths are relative to.
        tokenize: The token table of the usable records (``cached_table`` bound to the LM);
            None: lengths are not measured.
        max_length: ``data.max_length`` as training derives it (records longer are counted).
    """
    raw = read_json_records(path)
    records, problems = check_records(
        tqdm(raw, desc=f"checking {path.name}", unit="rec", mininterval=2.0), image_dir,
        open_images=True,
    )  # fmt: skip
    result = SplitCheck(split, path, records=len(raw), usable=len(records), problems=problems,
                        max_length=max_length)  # fmt: skip
    for rec in records:
        has_image = rec.get("image") is not None
        result.with_image += has_image
        result.text_only += not has_image
        result.turns[len(rec["conversations"])] += 1
    if tokenize is not None and records:
        result.lengths = tokenize(records).lengths()
    return result


def table_of(cache_dir: Path, path: Path, dataset: Any) -> Callable[[list[dict]], TokenTable]:
    """``check_split``'s ``tokenize``: the records' table through the token cache, so that
    training reads it instead of tokenizing again. ``dataset`` is a ``LlavaDataset`` of the
    same tokenizer and image tokens (its ``tokenize`` is used)."""

    def tokenize(records: list[dict[str, Any]]) -> TokenTable:
        return cached_table(cache_dir, path, records, dataset.tokenizer, dataset.num_image_tokens,
                            for_generation=False, tokenize=dataset.tokenize)  # fmt: skip

    return tokenize


def report_text(check: SplitCheck, show: int = 10) -> str:
    """The check of one split as the command prints it."""
    lines = [f"split {check.split}: {check.path}",
             f"  records {check.records:,}: {check.usable:,} usable ({check.with_image:,} with an "
             f"image, {check.text_only:,} text-only), {len(check.errors):,} with errors"]  # fmt: skip
    if check.turns:
        turns = sorted(check.turns.items())
        multi = sum(n for t, n in turns if t > 2)
        lines.append(f"  turns per record: {', '.join(f'{t}: {n:,}' for t, n in turns[:8])}"
                     f"{' ...' if len(turns) > 8 else ''} ({multi:,} multi-turn)")  # fmt: skip
    if check.lengths is not None and len(check.lengths):
        p50, p90, p99 = np.percentile(check.lengths, [50, 90, 99]).round().astype(int)
        lines.append(f"  tokens per record (image tokens included): p50 {p50}, p90 {p90}, "
                     f"p99 {p99}, max {int(check.lengths.max())}")  # fmt: skip
        if check.max_length is not None:
            lines.append(f"  longer than data.max_length={check.max_length}: {check.too_long:,}")
    kinds = Counter(p.kind for p in check.problems)
    for kind in (*ERROR_KINDS, *WARNING_KINDS):
        if not kinds[kind]:
            continue
        label = "error" if kind in ERROR_KINDS else "warning"
        lines.append(f"  {kind} ({label}): {kinds[kind]:,}")
        found = [p for p in check.problems if p.kind == kind]
        lines += [f"    {p}" for p in found[:show]]
        if len(found) > show:
            lines.append(f"    ... and {len(found) - show:,} more (--show N)")
    return "\n".join(lines)
