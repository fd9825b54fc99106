"""End to end: `msl-ablate export` writes a trained run as a llava-hf folder that plain
transformers loads and that answers as the harness does, for two LM families; a folder that
would differ is never written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from msl_ablate.cli import main
from msl_ablate.commands.train import run_train
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.evaluation.benchmark import prompt_records
from msl_ablate.evaluation.run_benchmarks import benchmark_specs
from msl_ablate.experiment.export import EXPORT_RECORD

TINY = ("vision=tiny_siglip", "offline_twins=true", "eval.benchmarks=[pope]", "eval.split=null")


def _train(make_cfg, *overrides: str) -> tuple:
    cfg = make_cfg(*TINY, *overrides)
    return cfg, run_train(cfg)


def _transformers_answers(folder: Path, records: list[dict], image_dir: Path,
                          max_new_tokens: int) -> dict:  # fmt: skip
    """Answer prompt records with plain transformers, as a user of the folder would."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    answers = {}
    for rec in records:
        text = rec["conversations"][0]["value"]
        assert text.startswith(f"{IMAGE_TOKEN}\n")  # LLaVA's prompts put the image first
        with Image.open(image_dir / rec["image"]) as image:
            messages = [{"role": "user", "content": [
                {"type": "image", "image": image.convert("RGB")},
                {"type": "text", "text": text.removeprefix(f"{IMAGE_TOKEN}\n")}]}]  # fmt: skip
            inputs = processor.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=True, return_dict=True,
                                                   return_tensors="pt")  # fmt: skip
        n = inputs["input_ids"].shape[1]
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)[0, n:]
        answers[str(rec["question_id"])] = processor.decode(ids, skip_special_tokens=True).strip()
    return answers


@pytest.mark.parametrize(
    ("lm", "lora"),
    [("tinyllama_11b_chat", True), ("qwen2_15b_instruct", False)],  # Llama and Qwen2 families
)
def test_export_answers_as_the_harness(make_cfg, tiny_overrides, tmp_path, capsys, lm, lora):
    extra = ["strategy.stages.finetune.lm.mode=lora"] if lora else []  # merged at export
    cfg, result = _train(make_cfg, f"lm={lm}", "eval.max_new_tokens=6", *extra)
    out, root = tmp_path / "export", f"paths.root={cfg.paths.root}"
    assert main(["export", result["training_key"], str(out), root]) == 0
    assert "greedy answers equal" in capsys.readouterr().out
    record = json.loads((out / EXPORT_RECORD).read_text())
    assert record["training_key"] == result["training_key"] and record["model"]["lm"] == lm
    assert len(record["parity"]["probes"]) == 5
    assert all(p["max_logit_difference"] <= 1e-4 * max(p["largest_logit"], 1)
               for p in record["parity"]["probes"].values())  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["vision_feature_select_strategy"] == "full"  # SigLIP: no CLS to drop
    assert config["vision_feature_layer"] == -2
    assert not any("lora" in k for k in json.dumps(config))  # merged, no adapters

    # The POPE answers the harness wrote during training, given again by plain transformers.
    pope = Path(cfg.paths.output_dir) / "trainings" / result["training_key"] / "evals" / (
        f"pope-{result['evaluations']['pope']['protocol']}")  # fmt: skip
    harness = {str(json.loads(line)["question_id"]): json.loads(line)["text"]
               for line in (pope / "answers.jsonl").read_text().splitlines()}  # fmt: skip
    spec = {s.name: s for s in benchmark_specs(cfg)}["pope"]
    records = prompt_records(spec)[0][:4]
    theirs = _transformers_answers(out, records, spec.image_dir, spec.max_new_tokens)
    assert theirs == {qid: harness[qid] for qid in theirs}
    if lm == "tinyllama_11b_chat":  # it answers words; the Qwen twin (3 zoo steps) ends at once
        assert any(theirs.values())

    # Imported back (llava-hf layout), the folder is a run that answers POPE as the original.
    assert main(["import", str(out), "--layout", "llava-hf", "--name", "back", root]) == 0
    printed = capsys.readouterr().out
    assert "its logits equal the release's own model's on 5 probes" in printed
    key = re.search(r"as training (\w+)", printed).group(1)
    same = [o for o in tiny_overrides if o.startswith("eval.")] + ["eval.max_new_tokens=6"]
    assert main(["evaluate", "--run", key, "--benchmarks", "pope", root, *same]) == 0
    back = next((Path(cfg.paths.output_dir) / "trainings" / key / "evals").glob("pope-*"))
    assert (back / "answers.jsonl").read_text() == (pope / "answers.jsonl").read_text()


def test_export_refuses_what_it_cannot_reproduce(make_cfg, tmp_path, capsys, monkeypatch):
    cfg, result = _train(make_cfg, "lm=tinyllama_11b_chat")
    root, key = f"paths.root={cfg.paths.root}", result["training_key"]
    out = tmp_path / "export"

    # A processor that normalises with another mean: pixels differ, the gate names them.
    import msl_ablate.models.llava_hf as llava_hf

    made = llava_hf.llava_hf_processor
    monkeypatch.setattr(llava_hf, "llava_hf_processor", lambda vlm: _shifted(made(vlm)))
    assert main(["export", key, str(out), root]) == 3
    err = capsys.readouterr().err
    assert "probe 'wide': apply_chat_template gives pixel_values that differ at (0, 0, 0, 0)" in err
    assert not out.exists() and not list(tmp_path.glob(".export.*"))  # nothing left behind
    monkeypatch.undo()

    out.mkdir()
    (out / "x").write_text("")
    assert main(["export", key, str(out), root]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", key, str(tmp_path / "o"), root, "lm=tiny_phi"]) == 2
    assert "export takes only paths.*, tracking.*, num_threads" in capsys.readouterr().err


def _shifted(processor):
    processor.image_processor.image_mean = [m + 0.1 for m in processor.image_processor.image_mean]
    return processor


def test_a_bfloat16_lm_exports_its_weights_exactly(make_cfg, tmp_path):
    from safetensors.torch import load_file

    from msl_ablate.experiment.export import trained_model

    cfg, result = _train(make_cfg, "lm=qwen2_15b_instruct", "lm.torch_dtype=bfloat16")
    out = tmp_path / "export"
    assert main(["export", result["training_key"], str(out), f"paths.root={cfg.paths.root}"]) == 0
    saved = load_file(str(out / "model.safetensors"))
    ours = trained_model(cfg).lm.model.model.layers[0].mlp.up_proj.weight
    assert ours.dtype == torch.bfloat16
    theirs = saved["language_model.model.layers.0.mlp.up_proj.weight"]  # llava-hf's names
    assert torch.equal(theirs, ours.float())  # upcast exactly, the gate passed in float32


def test_a_phi_run_goes_out_in_mipha_layout_and_comes_back(make_cfg, tiny_overrides, tmp_path,
                                                          capsys, monkeypatch):  # fmt: skip
    cfg, result = _train(make_cfg, "strategy.stages.finetune.lm.mode=lora")  # tiny_phi
    out, root = tmp_path / "export", f"paths.root={cfg.paths.root}"
    assert main(["export", result["training_key"], str(out), root]) == 2  # llava-hf: refused
    err = capsys.readouterr().err
    assert "has a bias (Phi's does)" in err and "--format mipha" in err and not out.exists()

    assert main(["export", result["training_key"], str(out), "--format", "mipha", root]) == 0
    printed = capsys.readouterr().out  # against Mipha's own forward pass (its unfused GELU)
    assert float(re.search(r"largest logit difference ([\d.e+-]+)", printed).group(1)) < 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "mipha_phi" and config["image_aspect_ratio"] == "square"
    tower = config["vision_config"]["vision_tower"]
    assert (tower["mm_vision_select_layer"], tower["mm_vision_select_feature"]) == (-2, "patch")
    assert config["vision_config"]["mm_projector"]["mm_projector_type"] == "mlp2x_gelu"

    # Read back as a Mipha release, it answers POPE as the run it came from.
    assert main(["import", str(out), "--layout", "mipha", "--name", "back", root]) == 0
    key = re.search(r"as training (\w+)", capsys.readouterr().out).group(1)
    same = [o for o in tiny_overrides if o.startswith("eval.")]
    assert main(["evaluate", "--run", key, "--benchmarks", "pope", root, *same]) == 0
    evals = Path(cfg.paths.output_dir) / "trainings"
    (original,) = (evals / result["training_key"] / "evals").glob("pope-*")
    (back,) = (evals / key / "evals").glob("pope-*")
    assert (back / "answers.jsonl").read_text() == (original / "answers.jsonl").read_text()

    # A folder Mipha would read differently (padding the images the run resized) is not written.
    import msl_ablate.models.mipha_layout as layout

    made = layout._config
    monkeypatch.setattr(layout, "_config", lambda *a: made(*a) | {"image_aspect_ratio": "pad"})
    bad = tmp_path / "bad"
    assert main(["export", result["training_key"], str(bad), "--format", "mipha", root]) == 3
    assert "probe 'wide': logits differ" in capsys.readouterr().err and not bad.exists()
