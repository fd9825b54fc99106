"""Stage, training and evaluation keys hash what a result depends on, and nothing else."""

from __future__ import annotations

from pathlib import Path

from msl_ablate.config.compose import compose
from msl_ablate.config.enums import QuestionFormat
from msl_ablate.evaluation.benchmark import BenchmarkSpec
from msl_ablate.experiment.keys import (
    evaluation_key,
    file_digest,
    protocol_inputs,
    protocol_key,
    stage_inputs,
    stage_keys,
    training_key,
)


def test_stage_keys_ignore_paths_tracking_eval_and_cadence_but_not_seed():
    base = stage_keys(compose(["paths.root=/a"]))
    same = [
        "paths.root=/b", "tracking.experiment=other", "data.num_workers=3", "study=x",
        "eval.max_samples=4", "eval.batch_size=3", "eval.benchmarks=[pope]", "num_threads=1",
        "checkpoint.every_steps=5", "trainer.log_every_n_steps=1", "optimized_metric=m",
        "eval.suite.generator.n_questions=3",
    ]  # fmt: skip
    for override in same:
        assert stage_keys(compose(["paths.root=/a", override])) == base, override
    for override in ("seed=1", "projector=linear", "trainer.precision=bf16-mixed",
                     "data.generator.n_captions=17", "lm.twin.config.hidden_size=64"):  # fmt: skip
        assert stage_keys(compose([override]))["align"] != base["align"], override
    assert len(base["align"]) == 12 and training_key(compose([])) == base["finetune"]


def test_resource_options_key_only_what_can_change_the_result():
    base = stage_keys(compose(["paths.root=/a"]))
    ft = "strategy.stages.finetune"
    # Recomputed activations and the token cache: the same numbers.
    for override in (f"{ft}.gradient_checkpointing=true", "data.token_cache=false"):
        assert stage_keys(compose(["paths.root=/a", override])) == base, override
    # Another kernel rounds differently: keyed when set, and only then (keys made before the
    # options existed still match at their defaults).
    for override in (f"{ft}.compile=true", f"{ft}.optimizer.fused=true"):
        keys = stage_keys(compose(["paths.root=/a", override]))
        assert keys["align"] == base["align"] and keys["finetune"] != base["finetune"], override
    assert stage_keys(compose(["lm.attn_implementation=eager"]))["align"] != base["align"]
    assert "compile" not in stage_inputs(compose([]))["finetune"]["stage"]


def test_stage_one_is_shared_by_every_figure5_cell_and_chains_into_stage_two():
    cells = ["vfrozen_lmfrozen", "vfrozen_lmfull", "vfrozen_lmlora", "vfull_lmfrozen",
             "vfull_lmfull", "vfull_lmlora"]  # fmt: skip
    keys = [stage_keys(compose([f"strategy={c}"])) for c in cells]
    assert len({k["align"] for k in keys}) == 1
    assert len({k["finetune"] for k in keys}) == len(cells)
    # Stage 2's key depends on stage 1's: a different stage 1 re-keys stage 2 too.
    other = stage_keys(compose(["strategy=vfrozen_lmlora", "strategy.stages.align.max_steps=7"]))
    assert other["align"] != keys[2]["align"] and other["finetune"] != keys[2]["finetune"]
    assert stage_inputs(compose([]))["finetune"]["previous"] == keys[1]["align"]


def test_a_real_checkpoint_is_keyed_by_its_id_and_a_twin_by_its_spec():
    real = stage_keys(compose(["lm=phi_2"]))
    assert stage_keys(compose(["lm=phi_2", "lm.twin.config.hidden_size=32"])) == real
    twin = stage_keys(compose(["lm=phi_2", "offline_twins=true"]))
    assert twin != real
    assert stage_keys(compose(["lm=phi_2", "offline_twins=true",
                               "lm.twin.config.hidden_size=32"])) != twin  # fmt: skip
    inputs = stage_inputs(compose(["lm=phi_2"]))["align"]["model"]
    assert inputs["lm"]["weights"] == "checkpoint" and "twin" not in inputs["lm"]
    assert inputs["vision"]["weights"] == "twin"  # tiny_siglip has no real checkpoint


def test_the_protocol_covers_files_suffix_tokens_and_batch_size(tmp_path: Path):
    cfg = compose([])
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": 1, "text": "?"}\n')
    spec = BenchmarkSpec("pope", "pope", questions, tmp_path, prompt_suffix="Answer yes or no.",
                         format=QuestionFormat.questions)  # fmt: skip
    base = protocol_key(protocol_inputs(spec, cfg))
    assert len(base) == 8 and protocol_key(protocol_inputs(spec, cfg)) == base
    changed = [
        BenchmarkSpec(**{**spec.__dict__, "prompt_suffix": ""}),
        BenchmarkSpec(**{**spec.__dict__, "max_new_tokens": 3}),
        BenchmarkSpec(**{**spec.__dict__, "max_questions": 5}),
    ]
    assert len({protocol_key(protocol_inputs(s, cfg)) for s in changed} | {base}) == 4
    assert protocol_key(protocol_inputs(spec, compose(["eval.batch_size=3"]))) != base
    assert protocol_key(protocol_inputs(spec, compose(["paths.root=/elsewhere"]))) == base
    questions.write_text('{"question_id": 1, "text": "??"}\n')  # same path, other content
    assert protocol_key(protocol_inputs(spec, cfg)) != base
    assert evaluation_key("t1", "pope", base) != evaluation_key("t2", "pope", base)


def test_file_digest_hashes_content_and_folders(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text("1")
    first = file_digest(tmp_path / "d")
    (tmp_path / "d" / "a.json").write_text("22")
    assert file_digest(tmp_path / "d") != first
    (tmp_path / "b.json").write_text("22")
    assert file_digest(tmp_path / "b.json") == file_digest(tmp_path / "d" / "a.json")
