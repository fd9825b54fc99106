"""The plan's time estimates: stage shapes, measured rates, the FLOPs model, device speed."""

from __future__ import annotations

import copy

import pytest
from omegaconf import open_dict

from msl_ablate.experiment import estimate as est
from msl_ablate.experiment.keys import stage_inputs
from msl_ablate.experiment.layout import StageLayout, TrainingLayout
from msl_ablate.models import size as size_module
from msl_ablate.models.size import ComponentSize, component_size
from msl_ablate.utils.files import write_json_atomic


def test_a_stage_shape_ignores_seed_budget_and_learning_rate_only(make_cfg) -> None:
    inputs = stage_inputs(make_cfg())["finetune"]
    shape = est.stage_shape(inputs)
    same = copy.deepcopy(inputs)
    same["seed"], same["previous"] = 7, "abc"
    same["stage"]["max_steps"] *= 10
    same["stage"]["lm"]["lr"] = 1.0
    assert est.stage_shape(same) == shape
    for change in ("batch_size", "lm"):
        other = copy.deepcopy(inputs)
        if change == "batch_size":
            other["stage"]["batch_size"] += 1
        else:
            other["stage"]["lm"]["mode"] = "lora"
        assert est.stage_shape(other) != shape, change


def _finished_stage(root, key: str, inputs: dict, steps: int, wall_s: float) -> None:
    layout = StageLayout.of(root, key)
    layout.root.mkdir(parents=True)
    write_json_atomic(layout.root / "inputs.json", inputs)
    write_json_atomic(layout.record, {"stage": "finetune", "steps": steps, "wall_s": wall_s})


def test_measured_stages_give_the_median_seconds_per_step(make_cfg, tmp_path) -> None:
    inputs = stage_inputs(make_cfg())["finetune"]
    for i, wall in enumerate((10.0, 12.0, 30.0)):  # 0.5, 0.6 and 1.5 s/step
        _finished_stage(tmp_path, f"k{i}", {**inputs, "seed": i}, 20, wall)
    other = copy.deepcopy(inputs)
    other["stage"]["batch_size"] = 999
    _finished_stage(tmp_path, "k9", other, 10, 1000.0)

    found = est.Measurements.read(tmp_path)

    guess = found.stage({**inputs, "seed": 5}, 100)
    assert guess is not None and guess.seconds == pytest.approx(60.0)
    assert "0.6 s/step (3 stage(s)" in guess.source
    odd = copy.deepcopy(inputs)
    odd["stage"]["lm"]["mode"] = "frozen"
    assert found.stage(odd, 100) is None


def test_measured_evaluations_time_the_same_benchmark_or_scale_per_question(
    make_cfg, tmp_path
) -> None:
    inputs = stage_inputs(make_cfg())["finetune"]
    _finished_stage(tmp_path, "trained", inputs, 20, 10.0)
    folder = TrainingLayout.of(tmp_path, "trained").eval_dir("gqa", "p1")
    folder.mkdir(parents=True)
    (folder / "answers.jsonl").write_text("{}\n" * 40)
    write_json_atomic(folder / "evaluation.json",
                      {"benchmark": "gqa", "protocol_key": "p1", "wall_s": 8.0})  # fmt: skip

    found = est.Measurements.read(tmp_path)

    assert found.evaluation(inputs, "gqa", "p1", None).seconds == 8.0
    assert found.evaluation(inputs, "pope", "p2", 100).seconds == pytest.approx(20.0)
    assert found.evaluation(inputs, "pope", "p2", None) is None


def test_stage_flops_count_forward_and_backward_by_trainability(make_cfg) -> None:
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.vision.image_size, cfg.data.max_length, cfg.data.max_text_length = 64, None, 100
        align = cfg.strategy.stages.align
        align.batch_size, align.max_steps = 4, 10
        align.vision.mode, align.lm.mode = "frozen", "frozen"
        finetune = cfg.strategy.stages.finetune
        finetune.batch_size, finetune.max_steps = 4, 10
        finetune.vision.mode, finetune.lm.mode = "full", "full"
    vision, lm = ComponentSize(1000, 16, "v"), ComponentSize(2000, None, "l")
    # 16 image tokens, 116 tokens in all, 40 samples
    frozen = 40 * (2 * 1000 * 16 + (2 + 2) * 2000 * 116)  # gradients still cross the LM
    trained = 40 * (6 * 1000 * 16 + 6 * 2000 * 116)
    assert est.stage_flops(cfg, "align", vision, lm) == frozen
    assert est.stage_flops(cfg, "finetune", vision, lm) == trained
    assert est.stage_flops(cfg, "align", ComponentSize(1000, None, "v"), lm) is None


def test_gpu_speed_is_peak_times_utilisation_times_devices(make_cfg) -> None:
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.num_nodes = "gpu", 4, 2
    speed = est.device_speed(cfg)
    assert speed.flops_per_s == pytest.approx(312e12 * 0.4 * 8)
    assert speed.devices == 8 and "312 TFLOP/s peak per GPU" in speed.text
    assert est.device_speed(cfg, 989, 0.5).flops_per_s == pytest.approx(989e12 * 0.5 * 8)


def test_component_sizes_come_from_the_twin_or_the_option(make_cfg, monkeypatch) -> None:
    cfg = make_cfg()
    from msl_ablate.models.assemble import build_vlm

    vlm = build_vlm(cfg)  # builds the twins, whose config.json the size is read from
    vision = component_size(cfg.vision, cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps)
    lm = component_size(cfg.lm, cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps)
    assert vision.params == sum(p.numel() for p in vlm.vision.parameters())
    assert lm.params == sum(p.numel() for p in vlm.lm.parameters())
    assert vision.patch_size == 16  # tiny_siglip: 64 px in 4 x 4 patches

    # a real checkpoint outside the Hugging Face cache: the option's own numbers
    monkeypatch.setattr(size_module, "_hf_config", lambda path: None)
    real = make_cfg("vision=siglip_so400m_p14_384", "lm=phi_2", "offline_twins=false")
    size = component_size(real.vision, False, real.paths.zoo_dir)
    assert (size.params, size.patch_size) == (428_000_000, 14)
    assert component_size(real.lm, False, real.paths.zoo_dir).params == 2_780_000_000
