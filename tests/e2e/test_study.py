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
    sweep = [*tiny_overrides, "eval.benchmarks=[gqa,pope,mme]", cells, "seed=0,1"]
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
    assert set(study["benchmark"]) == {"eval", "gqa", "pope", "mme"}

    out = cli(["report", "fig5_optim", "--resamples", "200"], cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "results" / "reports" / "fig5_optim-mini"
    for name in ("table.md", "table.tex", "table.csv", "differences.md", "findings.md",
                 "figure.png", "figure.pdf", "radar.png", "radar.pdf", "report.md"):  # fmt: skip
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


def test_report_all_adds_the_overview_radar_of_the_studies_that_ran(cli, swept: Path) -> None:
    out = cli(["report", "--all", "--resamples", "100"], cwd=swept)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "no results of study 'fig2_lm-mini'" in out.stderr  # not run: skipped, not an error
    assert "overview of 1 studies" in out.stdout
    with Image.open(swept / "results" / "reports" / "overview-mini" / "radar.png") as image:
        image.verify()


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


def test_plan_counts_what_is_done_and_times_the_rest_from_it(cli, swept: Path, tiny_overrides):
    sweep = [*tiny_overrides, "eval.benchmarks=[gqa,pope,mme]",
             "strategy=vfrozen_lmfull,vfrozen_lmlora", "seed=0,1,2"]  # fmt: skip

    out = cli(["plan", "fig5_optim", *sweep], cwd=swept)

    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "plan fig5_optim-mini: 6 job(s), 4 done" in text
    rows = [
        line.split() for line in text.splitlines() if line.startswith(("  align", "  finetune"))
    ]
    # seeds 0 and 1 are finished: one align per seed, shared by both strategies; seed 2 is new
    assert sorted((r[0], r[2], r[5]) for r in rows) == sorted(
        [("align", "2", "finished")] * 2 + [("finetune", "1", "finished")] * 4
        + [("align", "2", "todo")] + [("finetune", "1", "todo")] * 2
    )  # fmt: skip
    todo = [line for line in text.splitlines() if " todo " in line and "steps" in line]
    assert len(todo) == 3 and all("measured" in line for line in todo), todo
    # seed 2's two trainings x (held-out split, gqa, pope, mme), timed from seeds 0 and 1
    assert "evaluations to run: 8 (" in text and "8 measured" in text
    assert sum(line.endswith("of new work") and "seed=2: todo" in line
               for line in text.splitlines()) == 2  # fmt: skip

    (swept / "elsewhere").mkdir()
    empty = cli(["plan", "fig5_optim", *sweep], cwd=swept / "elsewhere")
    assert empty.returncode == 0, empty.stderr[-3000:]
    assert "0 done" in empty.stdout and "FLOPs" in empty.stdout and "s/step" not in empty.stdout


def test_plan_names_the_sweeps_when_one_is_unknown(cli, tmp_path: Path) -> None:
    out = cli(["plan", "fig9_nothing"], cwd=tmp_path)
    assert out.returncode == 2
    assert "no sweep 'fig9_nothing'" in out.stderr and "fig5_optim" in out.stderr
