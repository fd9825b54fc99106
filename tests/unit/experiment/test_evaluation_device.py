"""The trained model answers on the GPU the trainer used (Lightning's fit ends on the CPU)."""

from __future__ import annotations

import pytest
import torch

from msl_ablate.experiment.run import evaluation_device


@pytest.mark.parametrize(
    ("trainer", "gpu_here", "device"),
    [("gpu", True, "cuda"), ("cpu", True, "cpu"), ("gpu", False, "cpu")],
)
def test_evaluation_runs_where_the_trainer_trains(
    make_cfg, monkeypatch, trainer: str, gpu_here: bool, device: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_here)
    assert evaluation_device(make_cfg(f"trainer={trainer}")) == device


def test_auto_means_the_gpu_where_there_is_one(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert evaluation_device(make_cfg("trainer.accelerator=auto")) == "cuda"
