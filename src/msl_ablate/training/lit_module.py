"""``VLMLitModule``: the training step, metrics and optimizer of one stage. No freezing logic."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from msl_ablate.models.vlm import VisionLanguageModel

MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "pixel_values", "image_features")


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class VLMLitModule(L.LightningModule):
    """Trains the parameter groups that ``strategy.apply_stage`` returned.

    Args:
        vlm: The model (trainability already set).
        param_groups: ``[{"name", "params", "lr"}]``, one per trained component.
        stage: The ``strategy.stages.<name>`` node (steps, warm-up, AdamW settings).
    """

    def __init__(self, vlm: VisionLanguageModel, param_groups: list[dict], stage: DictConfig):
        super().__init__()
        self.vlm = vlm
        self.param_groups = param_groups
        self.stage = stage
        self.prefix = f"{stage.name}/train"
        # Stage checkpoints hold only trainable weights, so loading one is partial.
        self.strict_loading = False
        self._last_step_time: float | None = None

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.vlm(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})
        batch_size = batch["input_ids"].shape[0]
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log(
                f"{self.prefix}/samples_per_s",
                batch_size / (now - self._last_step_time),
                batch_size=batch_size,
            )
        self._last_step_time = now
        self.log(f"{self.prefix}/loss", out.loss, prog_bar=True, batch_size=batch_size)
        for group in self.optimizers().param_groups:
            self.log(f"{self.prefix}/lr_{group['name']}", group["lr"], batch_size=batch_size)
        return out.loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.param_groups,
            betas=tuple(self.stage.betas),
            eps=self.stage.eps,
            weight_decay=self.stage.weight_decay,
        )
        total = self.stage.max_steps
        warmup = int(self.stage.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total, warmup)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Frozen weights come from their checkpoints; saving them would multiply disk use.
        trainable = {f"vlm.{n}" for n, p in self.vlm.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k in trainable
        }
