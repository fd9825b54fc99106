"""Generic benchmark evaluation: question files, prompts, answer files, metric names.

Generation is replaced by an oracle (or a wrong answer), so these tests need no model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from msl_ablate.config.compose import compose
from msl_ablate.evaluation import benchmark as benchmark_module
from msl_ablate.evaluation.benchmark import BenchmarkSpec, evaluate_benchmark, read_questions
from msl_ablate.evaluation.oracle import guess_pools, oracle_answers
from msl_ablate.evaluation.run_benchmarks import benchmark_specs, prompt_limit
from msl_ablate.evaluation.suite import annotations_path, generate_suite, question_file
from msl_ablate.utils.errors import DataError

SUITE_ARGS = {"seed": 0, "image_size": 32, "n_questions": 8}
FAKE_VLM = SimpleNamespace(
    lm=SimpleNamespace(
        tokenizer=None, model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=256))
    ),
    vision=SimpleNamespace(image_transform=None),
    num_image_tokens=4,
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_suite(tmp_path_factory.mktemp("suite") / "s", **SUITE_ARGS)


def _spec(suite: Path, name: str, scorer: str | None, **kw) -> BenchmarkSpec:
    return BenchmarkSpec(
        name=name,
        scorer=scorer,
        questions=suite / question_file(name),
        image_dir=suite / name / "images",
        annotations=suite / annotations_path(name),
        **kw,
    )


def _fake_generation(monkeypatch, answer_of) -> list:
    """Replace generation; ``answer_of(record)`` gives the text, or None to leave it out."""
    calls = []

    def generate(vlm, dataset, batch_size, max_new_tokens, desc):
        calls.append((dataset, batch_size, max_new_tokens))
        out = {r["id"]: answer_of(r) for r in dataset.records}
        return {k: v for k, v in out.items() if v is not None}

    monkeypatch.setattr(benchmark_module, "generate_answers", generate)
    return calls


def test_oracle_generation_scores_the_maximum_and_writes_llava_files(suite, tmp_path, monkeypatch):
    spec = _spec(suite, "pope", "pope", prompt_suffix="Answer in one word.", max_new_tokens=3)
    truth = oracle_answers("pope", spec.annotations)
    calls = _fake_generation(monkeypatch, lambda r: truth[r["id"]].capitalize() + ".")

    metrics = evaluate_benchmark(FAKE_VLM, spec, tmp_path, "finetune/pope", 16, 200)

    assert metrics["finetune/pope/f1"] == pytest.approx(100.0)
    assert metrics["finetune/pope/adversarial/accuracy"] == pytest.approx(100.0)
    assert metrics["finetune/pope/n_missing"] == 0
    dataset, batch_size, max_new_tokens = calls[0]
    assert (batch_size, max_new_tokens, dataset.max_length, dataset.for_generation) == (
        16,
        3,
        200,
        True,
    )
    prompt = dataset.records[0]["conversations"][0]["value"]
    assert prompt.startswith("<image>\nIs there a ") and prompt.endswith("?\nAnswer in one word.")
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [x["question_id"] for x in lines] == list(truth)
    assert json.loads((tmp_path / "metrics.json").read_text())["f1"] == pytest.approx(100.0)
    # The blind baseline: "yes" to every question of a balanced benchmark (P 50, R 100).
    assert metrics["finetune/pope/majority_baseline/f1"] == pytest.approx(200 / 3)
    # Chance: a coin per question. F1 is not linear (a draw with no "yes" right scores 0), so
    # on these few questions its mean is under 50: the benchmark's 64 draws must agree with
    # 20,000 of our own, scored as POPE is (F1 per split, then their mean).
    rng = np.random.default_rng(0)
    per_split = []
    for split in sorted({q.split("/")[0] for q in truth}):
        positive = np.array([truth[q] == "yes" for q in truth if q.startswith(f"{split}/")])
        coins = rng.random((20_000, len(positive))) < 0.5  # (draws, n): True = "yes"
        tp = (coins & positive).sum(1)
        per_split.append(np.where(tp > 0, 200 * tp / (coins.sum(1) + positive.sum()), 0.0))
    f1 = np.mean(per_split, axis=0)  # (draws,): 2TP / (predicted + true positives), per split
    assert metrics["finetune/pope/chance_baseline/f1"] == pytest.approx(f1.mean(), abs=5.0)
    assert 30.0 < f1.mean() < 50.0


def test_missing_answers_are_counted_not_dropped(suite, tmp_path, monkeypatch):
    spec = _spec(suite, "mmbench", "mmbench")
    truth = oracle_answers("mmbench", spec.annotations)
    first = next(iter(truth))
    _fake_generation(monkeypatch, lambda r: None if r["id"] == first else truth[r["id"]])

    metrics = evaluate_benchmark(FAKE_VLM, spec, tmp_path, "finetune/mmbench", 8, 256)

    assert metrics["finetune/mmbench/n_missing"] == 1
    assert metrics["finetune/mmbench/circular_accuracy"] < 100.0  # that question's group fails
    # One letter for every circular copy can never pass all four copies of a question.
    assert metrics["finetune/mmbench/majority_baseline/circular_accuracy"] == 0.0
    # Chance passes a question's four copies with probability (1/4)^4 = 0.4 %.
    assert 0.0 <= metrics["finetune/mmbench/chance_baseline/circular_accuracy"] < 3.0


def test_chance_guesses_among_each_questions_options(suite, tmp_path, monkeypatch):
    spec = _spec(suite, "sqa_img", "sqa_img", options={"split": "test"})
    calls = _fake_generation(monkeypatch, lambda r: "A")
    metrics = evaluate_benchmark(FAKE_VLM, spec, tmp_path, "finetune/sqa_img", 8, 256)
    pools = guess_pools("sqa_img", spec.annotations)
    # The suite's ScienceQA questions have 2-4 options: expected accuracy mean(1/n) over the
    # questions with an image (the ones SQA-IMG scores).
    scored = [str(r["question_id"]) for r in calls[0][0].records if r["image"] is not None]
    expected = 100 * sum(1 / len(pools[q]) for q in scored) / len(scored)
    sizes = {len(p) for p in pools.values()}
    assert sizes <= {2, 3, 4} and len(sizes) >= 2  # the options of each question, not a fixed 4
    assert metrics["finetune/sqa_img/chance_baseline/accuracy"] == pytest.approx(expected, abs=4)


def test_the_baselines_are_scored_once_per_benchmark(suite, tmp_path, monkeypatch):
    import os

    from msl_ablate.evaluation import benchmark

    spec = _spec(suite, "pope", "pope")
    _fake_generation(monkeypatch, lambda r: "yes")
    scored = []
    real = benchmark.score
    monkeypatch.setattr(benchmark, "score", lambda *a, **k: scored.append(a) or real(*a, **k))
    monkeypatch.setattr(benchmark, "_BASELINES", {})
    first = evaluate_benchmark(FAKE_VLM, spec, tmp_path / "a", "finetune/pope", 8, 256)
    once = len(scored)
    assert once > benchmark.CHANCE_DRAWS  # the frequent answers, then the chance draws
    second = evaluate_benchmark(FAKE_VLM, spec, tmp_path / "b", "finetune/pope", 8, 256)
    assert len(scored) == once and first == second  # another model: the same baselines
    assert not list(tmp_path.rglob("*_answers.jsonl"))  # their answer files were scratch
    touched = spec.annotations if spec.annotations.is_file() else next(
        p for p in spec.annotations.rglob("*") if p.is_file())  # fmt: skip
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a changed file
    try:
        evaluate_benchmark(FAKE_VLM, spec, tmp_path / "c", "finetune/pope", 8, 256)
    finally:
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(scored) == 2 * once


def test_text_only_questions_have_no_image_placeholder(suite, tmp_path, monkeypatch):
    spec = _spec(suite, "sqa_img", "sqa_img", options={"split": "test"})
    calls = _fake_generation(monkeypatch, lambda r: "A")
    evaluate_benchmark(FAKE_VLM, spec, tmp_path, "finetune/sqa_img", 8, 256)
    records = calls[0][0].records
    text_only = [r for r in records if r["image"] is None]
    assert text_only and all("<image>" not in r["conversations"][0]["value"] for r in text_only)
    assert all("\nA. " in r["conversations"][0]["value"] for r in records)


def test_mmvet_exports_the_graders_format_and_has_no_metric(suite, tmp_path, monkeypatch):
    spec = _spec(suite, "mmvet", None, export="mmvet")
    _fake_generation(monkeypatch, lambda r: "A red circle.")
    assert evaluate_benchmark(FAKE_VLM, spec, tmp_path, "finetune/mmvet", 8, 256) == {}
    exported = json.loads((tmp_path / "mmvet_answers.json").read_text())
    assert exported["v1_0"] == "A red circle." and len(exported) == SUITE_ARGS["n_questions"]


def test_bad_question_files_name_file_line_and_id(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question_id": 1, "image": "a.png", "text": "?"}\n{"question_id": "1", "text": "?"}\n'
    )
    with pytest.raises(DataError, match=r"q\.jsonl:2: duplicate question_id '1' \(line 1\)"):
        read_questions(path, tmp_path)
    path.write_text('{"question_id": 7, "image": "b.png", "text": "?"}\n')
    with pytest.raises(DataError, match=r"q\.jsonl:1: question_id '7': image not found: .*b\.png"):
        read_questions(path, tmp_path)
    with pytest.raises(FileNotFoundError, match="nosuch.jsonl"):
        read_questions(tmp_path / "nosuch.jsonl", tmp_path)


def evaluate_benchmarks(cfg, vlm, specs, out_dir, stage) -> dict[str, float]:
    """Each benchmark into ``out_dir/<name>``, as ``experiment.evaluations`` runs them."""
    limit = prompt_limit(cfg, vlm)
    metrics: dict[str, float] = {}
    for spec in specs:
        metrics |= evaluate_benchmark(vlm, spec, out_dir / spec.name, f"{stage}/{spec.name}",
                                      cfg.eval.batch_size, limit - spec.max_new_tokens)  # fmt: skip
    return metrics


def test_evaluate_benchmarks_names_metrics_stage_benchmark_metric(tmp_path, monkeypatch):
    cfg = compose(
        [f"eval.suite.generator.{k}={v}" for k, v in SUITE_ARGS.items()]
        + [
            f"paths.root={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache",
            "eval.benchmarks=[gqa,mme]",
            "eval.split=null",
        ]
    )
    _fake_generation(monkeypatch, lambda r: "yes")

    specs = benchmark_specs(cfg)
    metrics = evaluate_benchmarks(cfg, FAKE_VLM, specs, tmp_path / "run" / "eval", "finetune")

    assert [s.name for s in specs] == ["gqa", "mme"]
    assert {k.split("/")[1] for k in metrics} == {"gqa", "mme"}
    assert "finetune/gqa/accuracy" in metrics and "finetune/mme/perception" in metrics
    assert metrics["finetune/mme/existence/acc"] == pytest.approx(50.0)  # one yes, one no
    assert (tmp_path / "run" / "eval" / "mme" / "answers.jsonl").is_file()
    by_name = {s.name: s for s in benchmark_specs(cfg, ["sqa_img", "mmvet"])}
    assert by_name["sqa_img"].options == {"split": "test"} and by_name["mmvet"].export == "mmvet"


def _llava_dataset(root: Path, answers: list[str], with_answer: bool = True) -> Path:
    """A LLaVA-format dataset on disk: records with conversations only (no question_type)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "img.png")
    records = [
        {
            "id": f"q{i}",
            "image": "img.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}]
            + ([{"from": "gpt", "value": answer}] if with_answer else []),
        }
        for i, answer in enumerate(answers)
    ]
    (root / "train.json").write_text(json.dumps(records))
    (root / "llava_eval.json").write_text(json.dumps(records))
    return root


def _llava_cfg(tmp_path: Path, root: Path):
    return compose(
        [
            f"paths.root={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache",
            "data.generator=null",
            f"data.root={root}",
            "data.files={captions: train.json, instruct: train.json, eval: llava_eval.json}",
            "eval.benchmarks=[]",
        ]
    )


def test_a_llava_format_eval_file_is_scored_by_exact_match(tmp_path, monkeypatch):
    root = _llava_dataset(tmp_path / "llava", ["a cat", "two dogs", "a cat", "red"])
    cfg = _llava_cfg(tmp_path, root)
    _fake_generation(monkeypatch, lambda r: "Cat." if r["id"] in ("q0", "q1") else "red")

    specs = benchmark_specs(cfg)
    metrics = evaluate_benchmarks(cfg, FAKE_VLM, specs, tmp_path / "out", "finetune")

    assert [s.name for s in specs] == ["eval"] and specs[0].scorer == "exact_match"
    assert metrics["finetune/eval/exact_match"] == pytest.approx(50.0)  # q0 and q3
    assert metrics["finetune/eval/majority_baseline"] == pytest.approx(50.0)  # "cat" twice
    assert metrics["finetune/eval/n_questions"] == 4
    lines = [json.loads(x) for x in (tmp_path / "out/eval/answers.jsonl").read_text().splitlines()]
    assert lines[0] == {"question_id": "q0", "prompt": "<image>\nWhat is it?", "text": "Cat."}


def test_eval_max_samples_scores_only_the_questions_asked(tmp_path, monkeypatch):
    root = _llava_dataset(tmp_path / "llava", ["a", "b", "c", "d"])
    cfg = _llava_cfg(tmp_path, root)
    cfg.eval.max_samples = 2
    _fake_generation(monkeypatch, lambda r: {"q0": "a", "q1": "x"}[r["id"]])
    specs = benchmark_specs(cfg)
    metrics = evaluate_benchmarks(cfg, FAKE_VLM, specs, tmp_path / "out", "finetune")
    assert metrics["finetune/eval/n_questions"] == 2 and metrics["finetune/eval/n_missing"] == 0
    assert metrics["finetune/eval/exact_match"] == pytest.approx(50.0)


def test_an_eval_file_without_answers_is_named_before_anything_runs(tmp_path):
    root = _llava_dataset(tmp_path / "llava", ["a", "b"], with_answer=False)
    with pytest.raises(
        DataError, match=r"eval.split='eval': .*llava_eval.json: record q0 carries no answer"
    ):
        benchmark_specs(_llava_cfg(tmp_path, root))


def test_the_prompt_suffix_is_never_added_twice():
    from msl_ablate.evaluation.benchmark import prompt_text

    suffix = "Answer the question using a single word or phrase."
    # LLaVA's question files carry the suffix in `text`; ours do not.
    for text in ("Is it overcast?", f"Is it overcast?\n{suffix}", f"Is it overcast?\n{suffix}\n"):
        prompt = prompt_text({"text": text, "image": "n161313.jpg"}, suffix)
        assert prompt.count(suffix) == 1 and prompt.startswith("<image>\nIs it overcast?\n")
    assert prompt_text({"text": "Is it overcast?"}, "") == "Is it overcast?"


def test_llavas_eval_kit_is_evaluated_and_scored_as_released(tmp_path, monkeypatch, make_cfg):
    from tests.helpers.llava_files import RIGHT, eval_kit

    root = eval_kit(tmp_path / "eval")
    cfg = make_cfg("benchmarks=llava_eval", f"eval.suite.root={root}", "eval.split=null",
                   "eval.benchmarks=[pope,mme,textvqa]", tiny=False)  # fmt: skip
    asked = []

    def answer(record):  # right on every question, keyed by the question asked
        asked.append(record["id"])
        return RIGHT[record["prompt"].split("\n")[0]]

    _fake_generation(monkeypatch, answer)
    specs = benchmark_specs(cfg)
    metrics = evaluate_benchmarks(cfg, FAKE_VLM, specs, tmp_path / "out", "finetune")

    assert metrics["finetune/pope/f1"] == 100.0 and metrics["finetune/pope/n_missing"] == 0
    assert (
        metrics["finetune/mme/perception"] == 200.0 and metrics["finetune/mme/cognition"] == 200.0
    )
    assert metrics["finetune/textvqa/accuracy"] == 100.0
    # Repeated ids are asked one question at a time and answered under the file's own id.
    assert "artwork/images/14777.jpg#2" in asked and "003a8ae2ef43b901#2" in asked
    lines = [json.loads(x) for x in (tmp_path / "out/mme/answers.jsonl").read_text().splitlines()]
    assert [x["question_id"] for x in lines][:2] == ["artwork/images/14777.jpg"] * 2
    assert lines[0]["prompt"] == ("Is this artwork created by Bosch?\n"
                                  "Answer the question using a single word or phrase.")  # fmt: skip


def test_the_exports_are_the_graders_formats():
    from msl_ablate.evaluation.scoring.benchmarks import EXPORTS

    lines = [{"question_id": 262144000, "text": "Two dogs."}, {"question_id": "7", "text": "Yes"}]
    name, content = EXPORTS["vqav2_upload"]
    assert name == "vqav2_upload.json"
    assert content(lines) == [{"question_id": 262144000, "answer": "2 dogs"},
                              {"question_id": 7, "answer": "yes"}]  # fmt: skip
    _, mmvet = EXPORTS["mmvet"]  # LLaVA numbers MM-Vet's questions; its grader wants v1_<n>
    assert mmvet([{"question_id": 0, "text": "x"}, {"question_id": "v1_3", "text": "y"}]) == {
        "v1_0": "x",
        "v1_3": "y",
    }


def test_mmbench_is_evaluated_from_its_released_tsv(tmp_path, monkeypatch):
    import base64
    import io

    from PIL import Image

    from msl_ablate.config.enums import QuestionFormat
    from msl_ablate.evaluation.benchmark import BenchmarkSpec

    def b64(colour: str) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
        return base64.b64encode(buffer.getvalue()).decode()

    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category",
              "source", "l2-category", "comment", "split", "image"]  # fmt: skip
    rows = [["241", "Which colour is the square?", "nan", "red", "blue", "nan", "nan", "A",
             "attribute", "x", "fine", "nan", "dev", b64("red")],
            ["242", "What is shown?", "A plain canvas.", "a dog", "a square", "a tree", "nan",
             "B", "object", "x", "coarse", "nan", "dev", b64("blue")]]  # fmt: skip
    tsv = tmp_path / "mmbench_dev_en_20231003.tsv"
    tsv.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    suffix = "Answer with the option's letter from the given choices directly."
    spec = BenchmarkSpec(name="mmbench", scorer="mmbench", questions=tsv, image_dir=tmp_path,
                         annotations=tsv, prompt_suffix=suffix, max_new_tokens=4,
                         format=QuestionFormat.mmbench_tsv)  # fmt: skip
    # The TSV holds no circular copies (as the 20231003 release): every rotation is
    # asked too. The fake model finds the right option's letter in whatever rotation it sees.
    right = {241: "red", 242: "a square"}
    asked = []

    def answer(record):
        asked.append(record)
        want = right[record["question_id"] % 1_000_000]
        return next(x[0] for x in record["prompt"].split("\n") if x.endswith(f". {want}"))

    _fake_generation(monkeypatch, answer)
    metrics = evaluate_benchmark(FAKE_VLM, spec, tmp_path / "out", "finetune/mmbench", 8, 256)

    assert metrics["finetune/mmbench/circular_accuracy"] == 100.0
    assert metrics["finetune/mmbench/n_questions"] == 5  # 2 + 3 rotations
    assert metrics["finetune/mmbench/n_missing"] == 0
    assert metrics["finetune/mmbench/majority_baseline/circular_accuracy"] == 0.0
    assert [r["id"] for r in asked] == ["241", "1000241", "242", "1000242", "2000242"]
    prompts = [r["prompt"] for r in asked]
    # As LLaVA's model_vqa_mmbench.py asks: hint, question, the present options, the suffix.
    assert prompts[2] == ("A plain canvas.\nWhat is shown?\nA. a dog\nB. a square\nC. a tree\n"
                          f"{suffix}")  # fmt: skip
    assert prompts[0] == f"Which colour is the square?\nA. red\nB. blue\n{suffix}"
    # Copy 2 (--all-rounds' round 2): letter i shows option i + 2.
    assert prompts[4] == ("A plain canvas.\nWhat is shown?\nA. a tree\nB. a dog\nC. a square\n"
                          f"{suffix}")  # fmt: skip
    assert [r["image"].name for r in asked] == ["241.jpg", "241.jpg", "242.jpg"] + ["242.jpg"] * 2
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["241.jpg", "242.jpg"]
    with Image.open(tmp_path / "out" / "images" / "242.jpg") as image:
        assert image.getpixel((8, 8))[2] > 200  # the blue one, decoded from the TSV

    # A TSV with its copies is asked as it is: one prompt per row, the options as written.
    rows.append(["1000241", *rows[0][1:3], "blue", "red", "nan", "nan", "B", *rows[0][8:]])
    tsv.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    records, _ = benchmark_module.prompt_records(spec)
    assert [r["id"] for r in records] == ["241", "242", "1000241"]
    assert records[2]["prompt"] == f"Which colour is the square?\nA. blue\nB. red\n{suffix}"
    assert records[2]["image"] is None  # not decoded when no folder is given
