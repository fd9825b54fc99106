"""The CUDA path: bf16 autocast training of both stages with LoRA (skipped without a GPU)."""

from __future__ import annotations

import pytest

from msl_ablate.commands.train import run_train

pytestmark = pytest.mark.gpu


def test_bf16_lora_run_on_gpu(make_cfg):
    cfg = make_cfg("trainer=gpu", "strategy=vfrozen_lmlora", "study=gpu")
    result = run_train(cfg)
    assert result["stages"] == {"align": "trained", "finetune": "trained"}
    assert result["store_rows"] > 0
    assert 0.0 <= result["metrics"]["finetune/eval/exact_match"] <= 100.0


def test_fsdp_on_one_gpu_trains_and_evaluates_on_it(make_cfg, monkeypatch):
    # FSDP2 on NCCL with one rank: the sharded path (gather, rebuild) end to end on CUDA, and
    # the rebuilt model answers on the GPU, not where Lightning's teardown left it.
    import torch

    from msl_ablate.experiment import run as experiment_run

    devices = []
    real = experiment_run.evaluate_one

    def on_device(evaluation, vlm, *args, **kwargs):
        devices.append(next(vlm.parameters()).device.type)
        return real(evaluation, vlm, *args, **kwargs)

    monkeypatch.setattr(experiment_run, "evaluate_one", on_device)
    cfg = make_cfg("trainer=gpu", "trainer.strategy=fsdp", "strategy=vfrozen_lmlora",
                   "study=gpu_fsdp")  # fmt: skip
    result = run_train(cfg)
    assert result["stages"] == {"align": "trained", "finetune": "trained"}
    assert devices and set(devices) == {"cuda"}
    assert torch.cuda.max_memory_allocated() > 0
