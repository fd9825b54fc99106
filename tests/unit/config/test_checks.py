"""``check_config``: cross-group problems, all reported at once, before anything is built."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tests.helpers.options import chosen_options

from msl_ablate.config import checks
from msl_ablate.config.checks import check_config
from msl_ablate.utils.errors import ConfigError

STRATEGIES = chosen_options("strategy")
LMS = chosen_options("lm")
FT = "strategy.stages.finetune"


def _problems(make_cfg, *overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        check_config(make_cfg(*overrides))
    return err.value.problems


def _no_qlora_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_preset_passes(make_cfg, strategy: str) -> None:
    check_config(make_cfg(f"strategy={strategy}"))
    check_config(make_cfg(f"strategy={strategy}", "preset=demo"))


@pytest.mark.parametrize("lm", LMS)
def test_every_lm_option_passes(make_cfg, lm: str) -> None:
    check_config(make_cfg(f"lm={lm}", "strategy=vfull_lmlora"))


def test_lora_settings_on_a_stage_without_lora(make_cfg) -> None:
    problems = _problems(make_cfg, f"{FT}.lora.r=16", f"{FT}.lora.dropout=0.1")
    assert problems == [
        f"{FT}.lora sets {{'r': 16, 'dropout': 0.1}} but {FT}.lm.mode=full; LoRA settings only "
        "apply to lm.mode=lora or qlora"
    ]


def test_default_lora_settings_are_fine_anywhere(make_cfg) -> None:
    check_config(make_cfg(f"{FT}.lora.r=64"))  # equal to the default: does nothing, harms nothing


def test_bad_lora_values(make_cfg) -> None:
    problems = _problems(
        make_cfg, "strategy=vfrozen_lmlora", f"{FT}.lora.r=0", f"{FT}.lora.alpha=0",
        f"{FT}.lora.dropout=1.0",
    )  # fmt: skip
    assert problems == [
        f"{FT}.lora.r must be >= 1, got 0",
        f"{FT}.lora.alpha must be > 0, got 0",
        f"{FT}.lora.dropout must be in [0, 1), got 1.0",
    ]


def test_partial_needs_a_block_count_and_an_lr(make_cfg) -> None:
    problems = _problems(make_cfg, f"{FT}.vision.mode=partial")
    assert problems == [
        f"{FT}.vision.lr must be > 0 when mode=partial, got 0.0",
        f"{FT}.vision.trainable_blocks must be >= 1 for mode=partial, got 0",
    ]


def test_trainable_blocks_without_partial(make_cfg) -> None:
    problems = _problems(make_cfg, f"{FT}.vision.trainable_blocks=2")
    assert problems == [
        f"{FT}.vision.trainable_blocks=2 only applies to mode=partial (mode is frozen); remove it "
        "or set mode=partial"
    ]


def test_modes_not_allowed_for_a_component(make_cfg) -> None:
    problems = _problems(make_cfg, f"{FT}.vision.mode=lora", f"{FT}.projector.mode=partial")
    assert problems == [
        f"{FT}.vision.mode='lora' is not allowed; choose one of ['frozen', 'full', 'partial']",
        f"{FT}.projector.mode='partial' is not allowed; choose one of ['frozen', 'full']",
    ]


def test_lr_must_be_positive_for_a_trained_component(make_cfg) -> None:
    problems = _problems(make_cfg, f"{FT}.lm.lr=0", "strategy.stages.align.projector.lr=-1e-3")
    assert f"{FT}.lm.lr must be > 0 when mode=full, got 0.0" in problems
    assert "strategy.stages.align.projector.lr must be > 0 when mode=full, got -0.001" in problems


def test_qlora_without_cuda_or_bitsandbytes(make_cfg, monkeypatch) -> None:
    _no_qlora_hardware(monkeypatch)
    problems = _problems(make_cfg, "strategy=vfrozen_lmlora", f"{FT}.lm.mode=qlora")
    assert len(problems) == 1
    assert problems[0].startswith(f"{FT}.lm.mode=qlora needs a CUDA GPU and bitsandbytes, but ")
    assert "no CUDA device is visible" in problems[0]
    assert "trainer.accelerator=cpu" in problems[0]
    assert problems[0].endswith("use lm.mode=lora or run with trainer=gpu on a CUDA machine")
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    assert ("bitsandbytes is not installed" in problems[0]) != has_bnb


def test_qlora_passes_with_cuda_and_bitsandbytes(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: object())
    check_config(make_cfg("strategy=vfrozen_lmlora", f"{FT}.lm.mode=qlora", "trainer=gpu"))


def test_qlora_under_fsdp_is_refused_with_the_ways_out(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: object())
    qlora = ["strategy=vfrozen_lmlora", f"{FT}.lm.mode=qlora", "trainer=gpu"]
    (problem,) = _problems(make_cfg, *qlora, "trainer.strategy=fsdp")
    assert problem.startswith(f"{FT}.lm.mode=qlora with trainer.strategy=fsdp: ")
    assert problem.endswith("use lm.mode=lora with fsdp, or qlora with trainer.strategy=ddp")
    check_config(make_cfg(*qlora, "trainer.strategy=ddp"))


def test_full_lm_next_to_qlora(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: object())
    problems = _problems(
        make_cfg, "strategy.stages.align.lm.mode=qlora", "strategy.stages.align.lm.lr=1e-4",
        "trainer=gpu",
    )  # fmt: skip
    assert problems == [
        f"{FT}.lm.mode=full is not possible: the LM is loaded in 4 bits for "
        "strategy.stages.align; use lora or frozen"
    ]


def test_full_lm_after_lora(make_cfg) -> None:
    problems = _problems(
        make_cfg, "strategy.stages.align.lm.mode=lora", "strategy.stages.align.lm.lr=1e-4"
    )
    assert problems == [
        f"{FT}.lm.mode=full is not possible: the adapters of strategy.stages.align would train "
        "with it; use lora or frozen"
    ]


def test_lora_settings_agree_across_stages(make_cfg) -> None:
    problems = _problems(
        make_cfg, "strategy=vfrozen_lmlora", "strategy.stages.align.lm.mode=lora",
        "strategy.stages.align.lm.lr=1e-4", "strategy.stages.align.lora.r=8",
    )  # fmt: skip
    assert problems == [
        f"{FT}.lora differs from strategy.stages.align.lora; the adapters are created once, so "
        "LoRA settings must agree across stages"
    ]


def test_optimizer_settings(make_cfg) -> None:
    problems = _problems(
        make_cfg, f"{FT}.optimizer.betas=[0.9,1.0]", f"{FT}.optimizer.eps=0",
        f"{FT}.warmup_ratio=1.5", f"{FT}.optimizer.weight_decay=-0.1",
    )  # fmt: skip
    assert problems == [
        f"{FT}.warmup_ratio must be in [0, 1), got 1.5",
        f"{FT}.optimizer.weight_decay must be >= 0, got -0.1",
        f"{FT}.optimizer.betas must be two numbers in [0, 1), got [0.9, 1.0]",
        f"{FT}.optimizer.eps must be > 0, got 0.0",
    ]


def test_every_problem_is_reported_at_once(make_cfg, monkeypatch) -> None:
    _no_qlora_hardware(monkeypatch)
    with pytest.raises(ConfigError) as err:
        check_config(
            make_cfg(
                "strategy.stages.align.lora.r=8",  # LoRA settings, LM frozen
                f"{FT}.vision.mode=partial",  # no block count, no lr
                f"{FT}.lm.mode=qlora",  # no CUDA
                "lm.lora_target_modules=[]",
            )
        )
    assert len(err.value.problems) == 5
    text = str(err.value)
    assert text.startswith("invalid config (5 problem(s)):")
    for key in ("align.lora", "vision.lr", "vision.trainable_blocks", "qlora", "lm.lora_target"):
        assert key in text


def test_a_global_batch_must_be_made_of_whole_device_batches(make_cfg) -> None:
    # batch_size 4 (tiny) on 2 devices x 1 node: 8 per forward pass over all devices.
    assert _problems(make_cfg, f"{FT}.global_batch_size=12", "trainer.devices=2") == [
        f"{FT}.global_batch_size=12 is not a multiple of {FT}.batch_size x processes = 4 x 2 = 8; "
        "batch sizes that divide it: [1, 2]"
    ]
    check_config(make_cfg(f"{FT}.global_batch_size=16", "trainer.devices=2"))
    check_config(make_cfg(f"{FT}.global_batch_size=12", "trainer.devices=auto"))  # counted later


def test_gradient_accumulation_makes_up_the_global_batch(make_cfg) -> None:
    from msl_ablate.config.batching import accumulation, global_batch, world_size

    cfg = make_cfg(f"{FT}.global_batch_size=32", "trainer.devices=2", "trainer.num_nodes=2")
    stage = cfg.strategy.stages.finetune
    assert world_size(cfg.trainer) == 4
    assert (accumulation(stage, 4), global_batch(stage, 4)) == (2, 32)
    assert (accumulation(stage, 8), global_batch(stage, 8)) == (1, 32)
    with pytest.raises(ConfigError, match="global_batch_size=32 is not a multiple of"):
        accumulation(stage, 3)
    align = cfg.strategy.stages.align  # no global batch: the device batches, never accumulated
    assert (accumulation(align, 4), global_batch(align, 4)) == (1, 16)
    assert world_size(make_cfg("trainer.devices=[0,1,2]").trainer) == 3
    assert world_size(make_cfg("trainer.devices=auto").trainer) is None
