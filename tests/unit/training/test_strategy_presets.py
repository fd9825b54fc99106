"""Every strategy preset: what trains in each stage, how much, and at which learning rate."""

from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import DictConfig
from tests.helpers.options import chosen_options
from torch import nn

from msl_ablate.config.checks import check_config
from msl_ablate.config.compose import CONF_DIR
from msl_ablate.data.conversation import tokenize_conversation
from msl_ablate.models.assemble import build_vlm
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.strategy import COMPONENTS, apply_stage

PRESETS = chosen_options("strategy")
FIGURE5 = {  # preset -> finetune modes (vision, lm)
    "vfrozen_lmfrozen": ("frozen", "frozen"),
    "vfrozen_lmfull": ("frozen", "full"),
    "vfrozen_lmlora": ("frozen", "lora"),
    "vfull_lmfrozen": ("full", "frozen"),
    "vfull_lmfull": ("full", "full"),
    "vfull_lmlora": ("full", "lora"),
}
MESSAGES = [
    {"role": "user", "content": "<image>\nWhat colour is the circle?"},
    {"role": "assistant", "content": "red"},
]


def _batch(vlm: VisionLanguageModel, image_size: int) -> dict[str, torch.Tensor]:
    sample = tokenize_conversation(vlm.lm.tokenizer, MESSAGES, vlm.num_image_tokens)
    ids = torch.tensor([sample.input_ids] * 2)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([sample.labels] * 2),
        "pixel_values": torch.randn(2, 3, image_size, image_size),
    }


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _expected_trainable(vlm: VisionLanguageModel, stage: DictConfig, lm_linears: list) -> dict:
    """The formula per component (computed from the model before any LoRA wrapping)."""
    vision = {
        "frozen": 0,
        # SigLIP's final norm runs after the block that gives the features: never trained.
        "full": _numel(vlm.vision) - _numel(vlm.vision.model.post_layernorm),
        "partial": sum(
            _numel(b) for b in list(vlm.vision.blocks)[-stage.vision.trainable_blocks :]
        ),
    }[stage.vision.mode.value]
    lora = sum(stage.lora.r * (m.in_features + m.out_features) for m in lm_linears)
    lm = {"frozen": 0, "full": None, "lora": lora}[stage.lm.mode.value]
    projector = _numel(vlm.projector) if stage.projector.mode.value == "full" else 0
    return {"vision": vision, "projector": projector, "lm": lm}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_stages(make_cfg, preset: str) -> None:
    cfg = make_cfg("vision=tiny_siglip", "lm=tiny_phi", "offline_twins=true", f"strategy={preset}")
    check_config(cfg)
    vlm = build_vlm(cfg)
    targets = set(cfg.lm.lora_target_modules)
    lm_linears = [
        m
        for n, m in vlm.lm.model.named_modules()
        if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets
    ]
    lm_total = _numel(vlm.lm)
    for stage in cfg.strategy.stages.values():  # in order, as experiment.run does
        groups = apply_stage(vlm, stage)
        expected = _expected_trainable(vlm, stage, lm_linears)
        expected["lm"] = lm_total if expected["lm"] is None else expected["lm"]
        trainable = {
            c: sum(p.numel() for p in getattr(vlm, c).parameters() if p.requires_grad)
            for c in COMPONENTS
        }
        assert trainable == expected, stage.name

        vlm.zero_grad(set_to_none=True)
        vlm(**_batch(vlm, cfg.vision.image_size)).loss.backward()
        for c in COMPONENTS:
            params = list(getattr(vlm, c).named_parameters())
            assert all(p.grad is None for _, p in params if not p.requires_grad), (stage.name, c)
            got_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in params)
            assert got_grad == (expected[c] > 0), (stage.name, c)
        if stage.lm.mode.value == "lora":
            assert all("lora_" in n for n, p in vlm.lm.named_parameters() if p.grad is not None)

        optimizer = VLMLitModule(vlm, groups, stage).configure_optimizers()["optimizer"]
        assert [g["name"] for g in optimizer.param_groups] == [c for c in COMPONENTS if expected[c]]
        warmup = int(stage.warmup_ratio * stage.max_steps)
        for group in optimizer.param_groups:
            lr = stage[group["name"]].lr
            assert group["initial_lr"] == pytest.approx(lr)
            # transformers' warm-up starts at 0; without warm-up the cosine starts at the full lr.
            assert group["lr"] == pytest.approx(0.0 if warmup else lr)
            opt = stage.optimizer
            assert list(group["betas"]) == list(opt.betas) and group["eps"] == opt.eps
            assert group["weight_decay"] == opt.weight_decay
        in_groups = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert in_groups == {id(p) for p in vlm.parameters() if p.requires_grad}


def test_partial_vision_trains_the_last_blocks(make_cfg) -> None:
    cfg = make_cfg(
        "vision=tiny_siglip", "lm=tiny_phi", "offline_twins=true",
        "strategy.stages.finetune.vision.mode=partial",
        "strategy.stages.finetune.vision.lr=1e-5",
        "strategy.stages.finetune.vision.trainable_blocks=2",
    )  # fmt: skip
    check_config(cfg)
    vlm = build_vlm(cfg)
    groups = apply_stage(vlm, cfg.strategy.stages.finetune)
    blocks = list(vlm.vision.blocks)
    trainable = {id(p) for p in vlm.vision.parameters() if p.requires_grad}
    assert trainable == {id(p) for b in blocks[-2:] for p in b.parameters()}
    assert {g["name"]: g["lr"] for g in groups}["vision"] == 1e-5


@pytest.mark.parametrize("preset", sorted(FIGURE5))
def test_figure5_cells_follow_the_reference_recipe(make_cfg, preset: str) -> None:
    stages = make_cfg(f"strategy={preset}", tiny=False).strategy.stages
    align, finetune = stages.align, stages.finetune
    assert (align.batch_size, align.warmup_ratio, align.optimizer.weight_decay) == (256, 0.03, 0.0)
    assert (align.projector.mode.value, align.projector.lr) == ("full", 1e-3)
    assert (align.vision.mode.value, align.lm.mode.value) == ("frozen", "frozen")
    opt = finetune.optimizer
    assert (finetune.batch_size, list(opt.betas), opt.eps) == (128, [0.9, 0.98], 1e-7)
    assert opt._target_ == "torch.optim.AdamW"
    assert finetune.scheduler._target_ == "transformers.get_cosine_schedule_with_warmup"
    assert finetune.projector.lr == 2e-5
    vision, lm = FIGURE5[preset]
    assert (finetune.vision.mode.value, finetune.lm.mode.value) == (vision, lm)
    if vision != "frozen":
        assert finetune.vision.lr == 2e-5
    assert finetune.lm.lr == (2e-4 if lm == "lora" else 2e-5)
    assert dict(finetune.lora) == {"r": 64, "alpha": 16, "dropout": 0.05}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_files(preset: str) -> None:
    text = (CONF_DIR / "strategy" / f"{preset}.yaml").read_text()
    assert text.startswith("#") and yaml.safe_load(text)["name"] == preset
    assert preset == "align_then_finetune" or preset in FIGURE5
