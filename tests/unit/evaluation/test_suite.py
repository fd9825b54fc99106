"""The miniature benchmark suite: official formats, oracle round trip, determinism, caching."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from msl_ablate.config.compose import compose
from msl_ablate.data.facts import present
from msl_ablate.evaluation.checks import eval_problems
from msl_ablate.evaluation.oracle import oracle_answers
from msl_ablate.evaluation.scoring import score
from msl_ablate.evaluation.scoring.files import iter_jsonl
from msl_ablate.evaluation.scoring.predictions import write_predictions
from msl_ablate.evaluation.suite import annotations_path, generate_suite, question_file
from msl_ablate.evaluation.suite.yes_no import build_pope

SUITE_ARGS = {"seed": 0, "image_size": 32, "n_questions": 12}
# benchmark -> scorer options (as in conf/benchmarks/synthetic_suite.yaml)
SCORED = {
    "vqav2": {},
    "gqa": {},
    "textvqa": {},
    "pope": {},
    "mme": {},
    "sqa_img": {"split": "test"},
    "mmbench": {},
}
# Metrics (and their breakdowns, e.g. accuracy/yes/no) whose maximum is 100 percent.
PERCENT_METRICS = ("accuracy", "circular_accuracy", "precision", "recall", "f1", "acc", "acc_plus")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_suite(tmp_path_factory.mktemp("suite") / "s", **SUITE_ARGS)


def _question_ids(root: Path, benchmark: str) -> list[str]:
    return [str(q["question_id"]) for _, q in iter_jsonl(root / question_file(benchmark))]


@pytest.mark.parametrize("benchmark", sorted(SCORED))
def test_oracle_answers_score_the_maximum(suite: Path, benchmark: str, tmp_path: Path) -> None:
    annotations = suite / annotations_path(benchmark)
    answers = oracle_answers(benchmark, annotations)
    predictions = write_predictions(tmp_path / "answers.jsonl", answers)

    metrics = score(benchmark, annotations, predictions, **SCORED[benchmark])

    assert metrics["n_missing"] == 0 and metrics["n_questions"] > 0
    percents = {k: v for k, v in metrics.items() if set(k.split("/")) & set(PERCENT_METRICS)}
    assert percents and all(v == pytest.approx(100.0) for v in percents.values()), percents
    if benchmark == "mme":
        assert metrics["perception"] == pytest.approx(200.0 * 5)  # five perception categories
    if benchmark == "pope":
        assert metrics["yes_ratio"] == pytest.approx(50.0)  # one yes and one no per image
    if benchmark == "mmbench":
        assert metrics["circular_accuracy"] == pytest.approx(100.0)


@pytest.mark.parametrize("benchmark", sorted(SCORED))
def test_question_ids_match_annotation_ids_and_images_exist(suite: Path, benchmark: str) -> None:
    ids = _question_ids(suite, benchmark)
    assert len(ids) == len(set(ids))
    assert set(ids) == set(oracle_answers(benchmark, suite / annotations_path(benchmark)))
    for _, q in iter_jsonl(suite / question_file(benchmark)):
        if "image" in q:
            assert (suite / benchmark / "images" / q["image"]).is_file()


def test_multiple_choice_questions_list_their_options(suite: Path) -> None:
    for benchmark in ("sqa_img", "mmbench"):
        for _, q in iter_jsonl(suite / question_file(benchmark)):
            assert "\nA. " in q["text"] and "\nB. " in q["text"]
    sqa = [q for _, q in iter_jsonl(suite / question_file("sqa_img"))]
    assert any("image" not in q for q in sqa)  # text-only problems, skipped by sqa_img
    assert all(q["text"].startswith("Context: ") for q in sqa)


def test_same_arguments_give_identical_files(tmp_path: Path, suite: Path) -> None:
    again = generate_suite(tmp_path / "again", **SUITE_ARGS)
    files = sorted(p.relative_to(suite) for p in suite.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (suite / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = generate_suite(tmp_path / "other", **{**SUITE_ARGS, "seed": 1})
    assert _question_ids(other, "gqa") == _question_ids(suite, "gqa")  # ids are positional
    text = question_file("vqav2")
    assert (other / text).read_text() != (suite / text).read_text()


def test_cached_suite_is_reused_and_rebuilt_on_new_arguments(tmp_path: Path) -> None:
    root = generate_suite(tmp_path / "s", **{**SUITE_ARGS, "n_questions": 4})
    manifest = root / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    generate_suite(root, **{**SUITE_ARGS, "n_questions": 4})
    assert manifest.stat().st_mtime_ns == stamp
    generate_suite(root, **{**SUITE_ARGS, "n_questions": 6})
    assert len(_question_ids(root, "vqav2")) == 6
    assert not list(tmp_path.glob(".s.*"))  # the temporary build folder is gone


def test_pope_negatives_are_absent_and_adversarial_ones_similar() -> None:
    items = build_pope(random.Random(3), 60)
    for item in items:
        have = present(item.scene)
        for ann in item.annotations:
            obj = ann["text"].removeprefix("Is there a ").removesuffix(" in the image?")
            assert (obj in have) == (ann["label"] == "yes")
            if ann["split"] == "adversarial" and ann["label"] == "no":
                colour, shape = obj.split()
                assert any(colour in h or shape in h for h in have)


def test_suite_config_points_at_generated_files(suite: Path) -> None:
    cfg = compose([f"eval.suite.generator.{k}={v}" for k, v in SUITE_ARGS.items()])
    assert eval_problems(cfg) == []
    for name, spec in cfg.eval.suite.benchmarks.items():
        assert (suite / spec.questions).is_file(), name
        assert (suite / spec.image_dir).is_dir(), name
        assert (suite / spec.annotations).exists(), name


def test_eval_problems_name_the_key() -> None:
    cfg = compose(["eval.benchmarks=[vqav2,nosuch]", "eval.suite.benchmarks.gqa.scorer=gqb"])
    problems = "\n".join(eval_problems(cfg))
    assert "eval.benchmarks: 'nosuch'" in problems
    assert "eval.suite.benchmarks.gqa.scorer='gqb'" in problems
