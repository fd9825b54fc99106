"""What only the built model can tell: errors raised when a stage is applied."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from omegaconf import open_dict

from msl_ablate.config.checks import check_config
from msl_ablate.config.enums import uses_qlora
from msl_ablate.models.assemble import build_vlm
from msl_ablate.training.strategy import apply_stage


@pytest.fixture
def tiny(make_cfg):
    def _make(*overrides: str):
        return make_cfg("vision=tiny_siglip", "lm=tiny_phi", "offline_twins=true", *overrides)

    return _make


def test_partial_deeper_than_the_encoder(tiny) -> None:
    cfg = tiny(
        "strategy.stages.finetune.vision.mode=partial",
        "strategy.stages.finetune.vision.lr=1e-5",
        "strategy.stages.finetune.vision.trainable_blocks=9",
    )
    check_config(cfg)  # the depth is known only from the model
    vlm = build_vlm(cfg)
    with pytest.raises(ValueError) as err:
        apply_stage(vlm, cfg.strategy.stages.finetune)
    depth = len(vlm.vision.blocks)  # blocks that feed the features (the adapter decides)
    message = str(err.value)
    assert "strategy.stages.finetune.vision.trainable_blocks=9" in message
    assert f"has {depth} blocks" in message and f"choose 1..{depth}" in message


def test_lora_target_missing_from_the_lm(tiny) -> None:
    cfg = tiny("strategy=vfrozen_lmlora", "lm.lora_target_modules=[q_proj,gate_proj]")
    vlm = build_vlm(cfg)
    with pytest.raises(ValueError) as err:
        apply_stage(vlm, cfg.strategy.stages.finetune)
    message = str(err.value)
    assert "lm.lora_target_modules ['gate_proj']" in message
    assert "'fc1'" in message and "conf/lm/tiny_phi.yaml" in message


def test_all_linear_lora_when_targets_are_null(tiny) -> None:
    cfg = tiny("strategy=vfrozen_lmlora", "lm.lora_target_modules=null")
    vlm = build_vlm(cfg)
    apply_stage(vlm, cfg.strategy.stages.finetune)
    trained = [n for n, p in vlm.lm.named_parameters() if p.requires_grad]
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trained}
    assert adapted == {"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"}


def test_qlora_needs_a_4bit_lm(tiny) -> None:
    cfg = tiny("strategy=vfrozen_lmlora")
    vlm = build_vlm(cfg)  # loaded in full precision: no stage uses qlora yet
    with open_dict(cfg):
        cfg.strategy.stages.finetune.lm.mode = "qlora"
    assert uses_qlora(cfg.strategy)
    with pytest.raises(RuntimeError, match=r"lm.mode=qlora but the LM tiny_phi was loaded in full"):
        apply_stage(vlm, cfg.strategy.stages.finetune)


@pytest.mark.skipif(
    torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None,
    reason="QLoRA can load here",
)
def test_qlora_build_fails_clearly_without_cuda_and_bitsandbytes(tiny) -> None:
    cfg = tiny("strategy=vfrozen_lmlora")
    with open_dict(cfg):
        cfg.strategy.stages.finetune.lm.mode = "qlora"
    with pytest.raises(Exception) as err:
        build_vlm(cfg)
    chain = f"{err.value} {err.value.__cause__}"
    assert "needs a CUDA GPU and the bitsandbytes package" in chain


def test_a_trained_tower_leaves_what_never_feeds_the_features_frozen(tiny) -> None:
    # SigLIP's final norm runs after the block that gives the features: no gradient reaches
    # it, and DDP would stop at a trainable parameter without one.
    cfg = tiny("strategy=vfull_lmfrozen", "strategy.stages.finetune.vision.lr=1e-5")
    vlm = build_vlm(cfg)
    apply_stage(vlm, cfg.strategy.stages.finetune)
    frozen = {n for n, p in vlm.vision.named_parameters() if not p.requires_grad}
    assert frozen == {"model.post_layernorm.weight", "model.post_layernorm.bias"}
    assert sum(p.requires_grad for p in vlm.vision.blocks[-1].parameters()) > 0
