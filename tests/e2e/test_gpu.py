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
