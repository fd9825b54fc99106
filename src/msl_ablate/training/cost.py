"""What a stage's training cost: its steps' wall time, samples and tokens per second, peak memory.

Lightning's ``ThroughputMonitor`` logs rates over a window of recent steps (the curves); this
sums the whole stage, so a report can put one number per stage beside each cell's scores.
The clock runs from the first step's start to the last step's end: loading the model, filling
the feature and token caches and evaluation are not in it. A resumed stage counts the steps of
its last process only.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class StageCost(L.Callback):
    """Count a stage's samples and tokens (real ones: padding is not counted) and time its steps.

    Counts are this process's times the number of processes (every rank gets a batch alike).
    """

    def __init__(self) -> None:
        self.samples = 0
        self.tokens = 0
        self.steps = 0
        self.truncated = 0  # samples cut at data.max_length (data.too_long=truncate)
        self._start: float | None = None
        self._end: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:  # fmt: skip
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:  # fmt: skip
        self.samples += int(batch["input_ids"].shape[0]) * trainer.world_size
        self.tokens += int(batch["attention_mask"].sum()) * trainer.world_size
        self.truncated += int(batch.get("truncated", 0)) * trainer.world_size
        self.steps += 1
        self._end = time.perf_counter()

    def summary(self) -> dict[str, float]:
        """``train_s``, ``samples_per_sec``, ``tokens_per_sec``, ``step_s`` and, on CUDA,
        ``peak_memory_gb`` (the most this process allocated); empty before a step ran."""
        if self._start is None or self._end is None or self._end <= self._start:
            return {}
        seconds = self._end - self._start
        cost = {
            "train_s": round(seconds, 3),
            "samples_per_sec": round(self.samples / seconds, 3),
            "tokens_per_sec": round(self.tokens / seconds, 1),
            "step_s": round(seconds / self.steps, 4),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cost["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return cost
