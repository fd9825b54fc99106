"""Fully sharded data parallel (``trainer.strategy=fsdp``): PyTorch's FSDP2 through Lightning.

Lightning's own ``fsdp`` strategy wraps with FSDP1, which needs a GPU and flattens parameters;
its ``ModelParallelStrategy`` leaves the sharding to the module's ``configure_model`` and runs
FSDP2 (``fully_shard``), which keeps every parameter's name, lets frozen and trained
parameters share a block and runs on CPU (gloo) too, so the same code is tested without a GPU.
``FullyShardedStrategy`` is that strategy with one data-parallel dimension over every rank.

Each block class that the LM option names in ``lm.shard_blocks`` (the vision option in
``vision.shard_blocks``) becomes one FSDP unit: its weights are gathered just before its
forward and freed after it, so a rank holds one block in full at a time. Everything else (the
embeddings, the projector, a tower without named blocks) is sharded with the model as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.tensor import DTensor

from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

FSDP = "fsdp"  # the value of trainer.strategy that selects FullyShardedStrategy


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 over all ranks of all nodes (no tensor parallelism).

    The module shards itself in ``configure_model`` with ``shard_model`` (``VLMLitModule``
    does). Resume checkpoints hold only the trained parameters, gathered on rank 0 into one
    file (not one shard per rank).

    Args:
        blocks: ``{"lm": [...], "vision": [...]}``: the block class names of each component
            (``lm.shard_blocks``, ``vision.shard_blocks``; None: the transformers model's
            ``_no_split_modules``).
    """

    def __init__(self, blocks: dict[str, list[str] | None], **kwargs: Any):
        super().__init__(save_distributed_checkpoint=False, **kwargs)
        self.blocks = blocks

    def setup_environment(self) -> None:
        # One dimension: every rank of every node shards the same model.
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        # Only what trains: the frozen weights come from their checkpoints, and gathering
        # them to rank 0 at every save would cost a whole model's memory and traffic.
        module = self.lightning_module
        state = trainable_state(module)  # collective: every rank gathers
        return state if self.global_rank == 0 else {}


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a sharded parameter gathered from every rank (collective), else itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the parameters that train, whole and on CPU.

    On a sharded model this gathers each parameter from every rank, so every rank must call it.
    """
    return {
        name: full(p.detach()).cpu().contiguous()
        for name, p in module.named_parameters()
        if p.requires_grad
    }


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` holds sharded parameters (FSDP2 left them as DTensors)."""
    return any(isinstance(p, DTensor) for p in module.parameters())


def _blocks(model: nn.Module, names: Iterable[str] | None, key: str) -> list[nn.Module]:
    """The modules of ``model`` whose class is named; None: the model's ``_no_split_modules``.

    Raises:
        ValueError: A named class is not in ``model`` (``key`` is the option that named it).
    """
    wanted = set(names if names is not None else getattr(model, "_no_split_modules", None) or [])
    found = [m for m in model.modules() if type(m).__name__ in wanted]
    missing = wanted - {type(m).__name__ for m in found}
    if names is not None and missing:
        classes = sorted({type(m).__name__ for m in model.modules() if list(m.children())})
        raise ValueError(
            f"{key}={sorted(wanted)}: {type(model).__name__} has no module of class "
            f"{sorted(missing)}; its classes with children are {classes}"
        )
    return found


def shard_model(vlm: nn.Module, mesh: Any, blocks: dict[str, list[str] | None]) -> None:
    """Shard ``vlm`` in place with FSDP2: each named block of the LM and the vision tower, then
    the rest as one unit (the root, whose forward gathers it).

    Args:
        vlm: The ``VisionLanguageModel`` (its forward is what training calls).
        mesh: The strategy's data-parallel device mesh.
        blocks: As ``FullyShardedStrategy``'s.

    Raises:
        ValueError: A named block class is not in its component.
    """
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    # Like DDP at wrap time: every rank starts from rank 0's trained weights. Randomly
    # initialised ones (a new projector, LoRA adapters) could differ between ranks, and
    # fully_shard keeps each rank's own slice; the frozen ones come from the same files.
    with torch.no_grad():
        for param in vlm.parameters():
            if param.requires_grad:
                dist.broadcast(param.data, src=dist.get_global_rank(mesh.get_group(), 0),
                               group=mesh.get_group())  # fmt: skip
    towers = {"lm": vlm.lm.model, "vision": getattr(vlm.vision, "model", None)}
    units = []
    for component, model in towers.items():
        key = f"{component}.shard_blocks"
        found = [] if model is None else _blocks(model, blocks.get(component), key)
        names = sorted({type(b).__name__ for b in found})  # before FSDP renames the classes
        for block in found:
            fully_shard(block, mesh=mesh)
        units.append(f"{component} {len(found)} ({', '.join(names) or 'with the root'})")
    fully_shard(vlm, mesh=mesh)
    log.info("FSDP over %d ranks: blocks sharded one by one: %s; the rest as one unit",
             mesh.size(), "; ".join(units))  # fmt: skip


def lightning_strategy(value: Any, blocks: dict[str, list[str] | None]) -> Any:
    """What to give Lightning's ``Trainer(strategy=...)`` for ``trainer.strategy``: ``fsdp``
    becomes ``FullyShardedStrategy``; anything else (auto, ddp, a Strategy) is Lightning's."""
    return FullyShardedStrategy(blocks) if value == FSDP else value
