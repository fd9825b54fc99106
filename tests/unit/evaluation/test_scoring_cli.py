"""`msl-ablate score` command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msl_ablate.commands.score import main
from msl_ablate.evaluation.scoring.benchmarks import SCORERS
from msl_ablate.evaluation.scoring.gqa import write_gqa
from msl_ablate.evaluation.scoring.predictions import write_predictions

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture
def gqa_files(tmp_path: Path) -> tuple[Path, Path]:
    ann = write_gqa(
        tmp_path / "q.json",
        [{"question_id": "1", "answer": "red"}, {"question_id": "2", "answer": "no"}],
    )
    return ann, write_predictions(tmp_path / "a.jsonl", {"1": "Red.", "2": "yes"})


def test_registry_has_the_seven_benchmarks_and_exact_match() -> None:
    seven = {"vqav2", "textvqa", "gqa", "sqa_img", "pope", "mme", "mmbench"}
    assert set(SCORERS) == seven | {"exact_match"}


def test_cli_prints_and_writes_metrics(
    gqa_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, preds = gqa_files
    out = tmp_path / "sub" / "metrics.json"
    argv = ["gqa", "--annotations", str(ann), "--predictions", str(preds), "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed)
    assert metrics["accuracy"] == 50.0 and metrics["n_missing"] == 0
    assert printed == json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    assert json.loads(out.read_text()) == metrics
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_cli_bad_file_exits_2_with_one_line(
    gqa_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, _ = gqa_files
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"question_id": "1", "text": "red"}\n{"question_id": "2", "text"\n')
    assert main(["gqa", "--annotations", str(ann), "--predictions", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"{bad}:2: invalid JSON" in captured.err


def test_cli_usage_errors_exit_2(
    gqa_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, preds = gqa_files
    base = ["--annotations", str(ann), "--predictions", str(preds)]
    assert main(["gqa", *base, "--split", "val"]) == 2  # gqa has no splits
    assert "takes no option(s) ['split']" in capsys.readouterr().err
    assert main(["gqa", *base, "--questions", str(ann)]) == 2  # nor a LLaVA question file
    assert "takes no option(s) ['questions']" in capsys.readouterr().err
    assert main(["nope", *base]) == 2
    assert main(["gqa", "--annotations", str(tmp_path / "missing.json"), "--predictions",
                 str(preds)]) == 2  # fmt: skip
    assert "missing.json" in capsys.readouterr().err


def test_cli_runs_as_module(gqa_files: tuple[Path, Path]) -> None:
    ann, preds = gqa_files
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "msl_ablate.commands.score", "gqa",
         "--annotations", str(ann), "--predictions", str(preds)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_questions"] == 2
