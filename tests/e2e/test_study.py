"""A study end to end: a small sweep of a paper figure, its rows in the store, its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

SCRIPT = str(Path(sys.executable).parent / "msl-ablate")
REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_figure_sweep_fills_the_store_and_its_report(tmp_path: Path, tiny_overrides) -> None:
    cells = "strategy=vfrozen_lmfull,vfrozen_lmlora"
    sweep = [*tiny_overrides, "eval.benchmarks=[gqa,pope]", cells, "seed=0,1"]
    out = _run(["train", "-m", "--config-dir", str(REPO / "sweeps"), "--config-name",
                "fig5_optim", *sweep], cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    store = pd.read_parquet(tmp_path / "results" / "store.parquet")
    study = store[store["study"] == "fig5_optim-mini"]
    trainings = study.groupby(["strategy", "seed"])["training_key"].nunique()
    assert trainings.to_dict() == {(s, k): 1 for s in ("vfrozen_lmfull", "vfrozen_lmlora")
                                   for k in (0, 1)}  # fmt: skip
    assert set(study["benchmark"]) == {"eval", "gqa", "pope"}

    out = _run(["report", "fig5_optim", "--resamples", "200"], cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "results" / "reports" / "fig5_optim-mini"
    for name in ("table.md", "table.tex", "table.csv", "differences.md", "findings.md",
                 "figure.png", "figure.pdf", "report.md"):  # fmt: skip
        assert (folder / name).is_file(), name
    table = (folder / "table.md").read_text()
    assert "vfrozen_lmlora" in table and "(chance)" in table and "POPE" in table
    assert "vfrozen_lmlora" in (folder / "differences.md").read_text()  # minus the reference
    findings = (folder / "findings.md").read_text()
    assert "LoRA is close to full tuning" in findings
    assert "not measured" in findings  # the vision-finetuning cells were not in this sweep
    with Image.open(folder / "figure.png") as image:
        image.verify()
    assert "not measured: Finetuning the vision encoder helps" in out.stdout
