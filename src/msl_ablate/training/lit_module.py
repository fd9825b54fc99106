"""``VLMLitModule``: the training step, metrics and optimizer of one stage. No freezing logic."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.distributed.tensor import DTensor

from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.training.flops import StepSizes, step_flops
from msl_ablate.training.micro_batches import count_label_tokens, split_by_length
from msl_ablate.training.sharding import FullyShardedStrategy, is_sharded, shard_model
from msl_ablate.utils.errors import NonFiniteLossError


def _local(param: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a sharded parameter (differentiable), else the parameter."""
    return param.to_local() if isinstance(param, DTensor) else param


class VLMLitModule(L.LightningModule):
    """Trains the parameter groups that ``strategy.apply_stage`` returned.

    Metrics are logged as ``train/<name>``; the stage's logger prefixes them with the stage
    (``align/train/loss``).

    Args:
        vlm: The model (trainability already set).
        param_groups: ``[{"name", "params", "lr"}]``, one per trained component.
        stage: The ``strategy.stages.<name>`` node (steps, warm-up, optimizer, scheduler).
    """

    # Lightning's ThroughputMonitor reads it after every step: flops/s, and MFU on known GPUs.
    flops_per_batch: int | None = None

    def __init__(self, vlm: VisionLanguageModel, param_groups: list[dict], stage: DictConfig):
        super().__init__()
        self.vlm = vlm
        # By name: sharding (FSDP) replaces the parameter objects, never their names.
        names = {id(p): name for name, p in vlm.named_parameters()}
        self.group_names = [
            {**g, "params": [names[id(p)] for p in g["params"]]} for g in param_groups
        ]
        self.stage = stage
        # Stage checkpoints hold only trainable weights, so loading one is partial.
        self.strict_loading = False
        self.sizes = StepSizes.of(vlm)

    def _checkpointed(self) -> list[Any]:
        """The transformers models whose activations this stage recomputes: the LM, and the
        tower if it trains and supports it."""
        tower = getattr(self.vlm.vision, "model", None)
        trains = tower is not None and any(p.requires_grad for p in tower.parameters())
        found = [self.vlm.lm.model, tower] if trains else [self.vlm.lm.model]
        return [m for m in found if getattr(m, "supports_gradient_checkpointing", False)]

    def configure_model(self) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, FullyShardedStrategy) and not is_sharded(self.vlm):
            shard_model(self.vlm, self.device_mesh["data_parallel"], strategy.blocks)

    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups, with the parameters the model holds now."""
        params = dict(self.vlm.named_parameters())
        return [{**g, "params": [params[n] for n in g["params"]]} for g in self.group_names]

    def on_fit_start(self) -> None:
        if self.stage.gradient_checkpointing:
            for model in self._checkpointed():
                # Non-reentrant: works with frozen blocks and inputs that need no gradient.
                model.gradient_checkpointing_enable({"use_reentrant": False})
        if self.stage.compile:
            self.vlm.lm.model.compile(dynamic=True)  # in place: parameter names unchanged

    def on_fit_end(self) -> None:
        # The next stage (or evaluation) decides for itself.
        if self.stage.gradient_checkpointing:
            for model in self._checkpointed():
                model.gradient_checkpointing_disable()
        if self.stage.compile:
            self.vlm.lm.model._compiled_call_impl = None  # what Module.compile set; no public undo

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The loss of one batch.

        Raises:
            NonFiniteLossError: The loss (averaged over ranks) is NaN or infinite; raised
                before backward, so the weights and the optimizer state stay those of the last
                finite step.
        """
        parts = split_by_length(batch, self.stage.split_by_length, self.vlm.image_token_id)
        world = self.trainer.world_size
        if len(parts) == 1 and world == 1:
            loss = self.vlm(**parts[0]).loss
        else:  # one graph: the token-mean loss and gradient of the whole batch
            n_tokens = count_label_tokens(batch["labels"])
            if world > 1:
                # DDP averages the ranks' gradients: dividing each rank's summed token losses
                # by the mean count over ranks makes that the token-mean over the global batch,
                # as on one device (transformers' average_tokens_across_devices).
                n_tokens = self.trainer.strategy.reduce(n_tokens.float(), reduce_op="mean")
            loss = sum(self.vlm(**part, num_items_in_batch=n_tokens).loss for part in parts)
        # Averaged so that every rank stops: one that went on would wait forever in the
        # gradient all-reduce. NaN or inf on any rank makes the mean non-finite.
        mean_loss = self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")
        if not torch.isfinite(mean_loss):
            raise NonFiniteLossError(self.stage.name, self.global_step, mean_loss.item())
        if not loss.requires_grad:
            # A text-only batch when only the projector trains: nothing trained is in the graph.
            # Tie the trained weights in with a zero gradient, so the step (and every DDP rank)
            # still happens and the data stream stays at one batch per step.
            loss = loss + sum(
                _local(p).sum() * 0.0 for g in self.optimizers().param_groups for p in g["params"]
            )
        batch_size = batch["input_ids"].shape[0]
        # The mean over ranks: the token-mean loss of the whole step (see above).
        self.log("train/loss", mean_loss, prog_bar=True, batch_size=batch_size)
        # The share of computed positions that are padding.
        computed = sum(part["attention_mask"].numel() for part in parts)
        self.flops_per_batch = step_flops(self.sizes, batch, computed, self.vlm.num_image_tokens)
        padding = 1.0 - batch["attention_mask"].sum().item() / computed
        self.log("train/padding", padding, batch_size=batch_size)
        for group in self.optimizers().param_groups:
            self.log(f"train/lr_{group['name']}", group["lr"], batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = instantiate(self.stage.optimizer, _convert_="all")(self.param_groups())
        total = self.stage.max_steps
        scheduler = instantiate(self.stage.scheduler)(
            optimizer,
            num_warmup_steps=int(self.stage.warmup_ratio * total),
            num_training_steps=total,
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
