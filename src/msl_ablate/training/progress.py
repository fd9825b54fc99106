"""A stage's progress bar: optimizer steps out of the stage's ``max_steps``, with the loss.

Lightning's bar counts batches per epoch (``Epoch 3/-2`` when a stage is bounded by steps and
the data loader is restarted); a stage is a step budget, so this bar has one line per stage.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class StageProgressBar(TQDMProgressBar):
    """``align  37%|███▋      | 22/60 [00:04<00:07, loss=5.912]``.

    Args:
        stage: The stage's name, the bar's label.
    """

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        # Lightning's init_train_tqdm draws a "Training 0/?" bar first; this one knows its total.
        self.train_progress_bar = Tqdm(
            desc=self.stage,
            total=trainer.max_steps,
            initial=trainer.global_step,  # a resumed stage starts part-way
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        pass  # one bar for the whole stage: epochs are only restarts of the data loader

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        step = trainer.global_step
        if self._should_update(step, trainer.max_steps):
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
        if step >= trainer.max_steps:  # end the line before Lightning logs that fit stopped
            self.train_progress_bar.close()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        # `train/loss` -> `loss`; the logger's version number means nothing here.
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return {key.rsplit("/", 1)[-1]: value for key, value in metrics.items()}
