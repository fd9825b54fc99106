"""FSDP (``trainer.strategy=fsdp``) pieces on one gloo process: the blocks each option names,
the sharded model and the trainable weights gathered from it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from msl_ablate.models.assemble import build_vlm
from msl_ablate.training.sharding import (
    FullyShardedStrategy,
    is_sharded,
    lightning_strategy,
    shard_model,
    trainable_state,
)
from msl_ablate.training.strategy import apply_stage


@pytest.fixture
def one_rank() -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def tiny_vlm(make_cfg):
    cfg = make_cfg("vision=tiny_siglip", "lm=tiny_phi", "offline_twins=true")
    vlm = build_vlm(cfg)
    apply_stage(vlm, cfg.strategy.stages.finetune)
    return cfg, vlm


def test_fsdp_is_the_harness_strategy_and_other_values_are_lightnings():
    blocks = {"lm": ["PhiDecoderLayer"], "vision": None}
    strategy = lightning_strategy("fsdp", blocks)
    assert isinstance(strategy, FullyShardedStrategy) and strategy.blocks == blocks
    assert lightning_strategy("ddp", blocks) == "ddp"
    assert lightning_strategy("auto", blocks) == "auto"


def test_sharding_keeps_names_and_the_gathered_weights(one_rank, tiny_vlm):
    cfg, vlm = tiny_vlm
    before = trainable_state(vlm)
    assert cfg.lm.shard_blocks == ["PhiDecoderLayer"]
    mesh = init_device_mesh("cpu", (1,))
    shard_model(vlm, mesh, {"lm": list(cfg.lm.shard_blocks), "vision": None})
    assert is_sharded(vlm)
    decoder_layers = [
        m for m in vlm.lm.model.modules() if type(m).__name__.endswith("DecoderLayer")
    ]
    assert decoder_layers and all(type(m).__name__ == "FSDPPhiDecoderLayer" for m in decoder_layers)
    after = trainable_state(vlm)
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), name


def test_a_block_class_the_lm_does_not_have_is_named_with_the_key(one_rank, tiny_vlm):
    _, vlm = tiny_vlm
    mesh = init_device_mesh("cpu", (1,))
    with pytest.raises(ValueError) as err:
        shard_model(vlm, mesh, {"lm": ["LlamaDecoderLayer"], "vision": None})
    message = str(err.value)
    assert "lm.shard_blocks=['LlamaDecoderLayer']" in message
    assert "no module of class ['LlamaDecoderLayer']" in message and "PhiDecoderLayer" in message
