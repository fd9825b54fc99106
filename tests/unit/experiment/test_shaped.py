"""``msl-ablate bench --shape``: the real-sized model's architecture, and its step's numbers."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from msl_ablate.commands.bench import main as bench_main
from msl_ablate.experiment.shaped import build_shaped_vlm, load_shape, run_shaped
from msl_ablate.training.flops import StepSizes


def test_the_paper_shape_has_the_checkpoints_parameter_counts():
    with torch.device("meta"):  # no memory: 3.2B parameters
        vlm = build_shaped_vlm(load_shape("siglip_so400m_phi2"))
    # microsoft/phi-2 has 2,779,683,840 parameters; SigLIP so400m's vision tower 428,225,600
    # whole, of which the harness keeps the 26 blocks before the feature layer, no pooling head.
    assert sum(p.numel() for p in vlm.lm.parameters()) == 2_779_683_840
    assert vlm.num_image_tokens == 729  # (384 / 14)^2
    assert len(vlm.vision.blocks) == 26
    assert not any(name.endswith("head") for name, _ in vlm.vision.model.named_children())


def _tiny(shape):
    tiny = OmegaConf.to_container(shape)
    tiny["vision"]["args"].update(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                  image_size=56)  # fmt: skip
    tiny["lm"]["args"].update(vocab_size=300, hidden_size=32, intermediate_size=64,
                              num_attention_heads=2)  # fmt: skip
    tiny.update(name="tiny", text_tokens=12, answer_tokens=5)
    return OmegaConf.create(tiny)


def test_a_shaped_step_trains_the_stage_and_reports_its_throughput(make_cfg):
    cfg = make_cfg()
    shape = _tiny(load_shape("siglip_so400m_phi2"))
    result = run_shaped(cfg, shape, "finetune", steps=3, warmup=1, batch_size=4, layers=2)
    assert result["sequence"] == 16 + 12  # (56 / 14)^2 image tokens, then the text
    assert result["steps"] == 3 and result["step_ms"] > 0
    assert result["tokens_per_s"] == pytest.approx(4 * 28 / (result["step_ms"] / 1e3), rel=0.01)
    # The finetune stage trains the LM and the projector, never the tower.
    vlm = build_shaped_vlm(shape, layers=2)
    lm_and_projector = sum(p.numel() for m in (vlm.lm, vlm.projector) for p in m.parameters())
    assert result["trained_b"] == round(lm_and_projector / 1e9, 3)
    assert StepSizes.of(vlm).vision.weights > 0
    assert result["mfu"] is None  # on a CPU: no known peak


def test_bench_shape_refuses_what_it_cannot_do(capsys):
    assert bench_main(["--shape", "nope", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--shape 'nope': no " in err and "(shapes: siglip_so400m_phi2)" in err
    assert bench_main(["--shape", "siglip_so400m_phi2", "--layers", "1"]) == 2
    assert "--layers 1: at least 2" in capsys.readouterr().err
    assert bench_main(["--shape", "siglip_so400m_phi2", "--stages", "align,finetune"]) == 2
    assert "--shape times one stage" in capsys.readouterr().err
