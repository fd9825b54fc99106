"""A study end to end: a small sweep of a paper figure, its rows in the store, its report, and the
analysis notebook executed on it."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, tiny_overrides, cli) -> Path:
    """A folder where a small Figure-5 sweep ran: 2 strategies x 2 seeds, tiny budgets."""
    root = tmp_path_factory.mktemp("study")
    cells = "strategy=vfrozen_lmfull,vfrozen_lmlora"
    sweep = [*tiny_overrides, "eval.benchmarks=[gqa,pope]", cells, "seed=0,1"]
    out = cli(["train", "-m", "--config-dir", str(REPO / "sweeps"), "--config-name",
                "fig5_optim", *sweep], cwd=root)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def test_a_figure_sweep_fills_the_store_and_its_report(cli, swept: Path) -> None:
    tmp_path = swept
    store = pd.read_parquet(tmp_path / "results" / "store.parquet")
    study = store[store["study"] == "fig5_optim-mini"]
    trainings = study.groupby(["strategy", "seed"])["training_key"].nunique()
    assert trainings.to_dict() == {(s, k): 1 for s in ("vfrozen_lmfull", "vfrozen_lmlora")
                                   for k in (0, 1)}  # fmt: skip
    assert set(study["benchmark"]) == {"eval", "gqa", "pope"}

    out = cli(["report", "fig5_optim", "--resamples", "200"], cwd=tmp_path)

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


def test_the_analysis_notebook_runs_on_one_study(swept: Path, monkeypatch) -> None:
    notebook = REPO / "notebooks" / "ablation_analysis.ipynb"
    paired = jupytext.read(REPO / "notebooks" / "ablation_analysis.py")
    nb = nbformat.read(notebook, as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in paired.cells], (
        "ablation_analysis.ipynb is out of sync: jupytext --sync notebooks/ablation_analysis.py"
    )
    monkeypatch.setenv("MSL_ABLATE_ROOT", str(swept))
    monkeypatch.setenv("MSL_ABLATE_STUDY", "fig5_optim")
    monkeypatch.setenv("MSL_ABLATE_RESAMPLES", "100")  # the kernel inherits the environment
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(swept)}}).execute()  # fmt: skip
    outputs = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip
    assert "study fig5_optim-mini" in outputs and "vfrozen_lmlora" in outputs
    assert "(chance)" in outputs and "LoRA is close to full tuning" in outputs
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) == 1
