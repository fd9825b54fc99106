"""A study's report from a fixture store: tables match golden files, every file is written, the
figure opens, findings and factorial effects come out as the data say."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from msl_ablate.config.schema import FindingConfig, ReportConfig
from msl_ablate.evaluation.scoring.benchmarks import HEADLINES_FROM_UNITS
from msl_ablate.results.figures import radar
from msl_ablate.results.findings import check_finding
from msl_ablate.results.report import radar_rows, write_report
from msl_ablate.results.study import StudyError, load_study

GOLDEN = Path(__file__).parent / "golden"
STUDY = "fixture-mini"
# cell -> (GQA accuracy, POPE share of right answers) that its seeds scatter around
CELLS = {"phi_2": (0.70, 0.90), "gemma_2b": (0.55, 0.85), "phi_15": (0.50, 0.84)}


def _units(rng: np.random.Generator, scorer: str, p: float, n: int) -> pd.DataFrame:
    right = rng.random(n) < p
    if scorer == "gqa":
        return pd.DataFrame({"unit": [f"g{i}" for i in range(n)], "score": right.astype(float)})
    label = np.where(np.arange(n) % 2 == 0, "yes", "no")
    pred = np.where(right, label, np.where(label == "yes", "no", "yes"))
    split = np.array(["adversarial", "popular", "random"])[np.arange(n) % 3]
    return pd.DataFrame({"unit": [f"p{i}" for i in range(n)], "split": split, "label": label,
                         "pred": pred})  # fmt: skip


@pytest.fixture(scope="module")
def fixture() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A store of 3 cells x 3 seeds x 2 benchmarks, with the per-unit outcomes behind it."""
    rng = np.random.default_rng(7)
    rows, units = [], {}
    for cell, (p_gqa, p_pope) in CELLS.items():
        for seed in range(3):
            key = f"{cell}-{seed}"
            for benchmark, metric, p, n in (("gqa", "accuracy", p_gqa, 300),
                                            ("pope", "f1", p_pope, 300)):  # fmt: skip
                run_id = f"run-{key}-{benchmark}"
                units[run_id] = _units(rng, benchmark, p + rng.normal(0, 0.02), n)
                cols = {c: units[run_id][c].to_numpy() for c in units[run_id]}
                common = {"training_key": key, "evaluation_key": f"{key}-{benchmark}",
                          "benchmark": benchmark, "protocol": "p1", "study": STUDY, "seed": seed,
                          "lm": cell, "scorer": benchmark, "evaluation_run_id": run_id,
                          "training_run_id": f"train-{key}"}  # fmt: skip
                value = HEADLINES_FROM_UNITS[benchmark](cols)
                chance = 50.0 if benchmark == "pope" else 12.5
                rows += [common | {"metric": metric, "value": value},
                         common | {"metric": f"chance_baseline/{metric}", "value": chance},
                         common | {"metric": "n_questions", "value": n}]  # fmt: skip
    other = dict(rows[0]) | {"study": "other-mini", "lm": "intruder", "value": 99.0}
    return pd.DataFrame([*rows, other]), units


def _report(**kwargs) -> ReportConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ReportConfig), kwargs))


def test_report_writes_golden_tables_figure_and_findings(fixture, tmp_path: Path) -> None:
    store, units = fixture
    study = load_study(store, STUDY, "lm", order=["phi_2", "gemma_2b", "phi_15"])
    assert study.cells == ["phi_2", "gemma_2b", "phi_15"]  # "intruder" of another study: never
    assert study.columns == ["GQA", "POPE"]
    report = _report(
        title="Fixture", axis="lm", reference="phi_2",
        paper_order=["phi_2", "gemma_2b", "phi_15"],
        findings=[
            FindingConfig(claim="Phi-like best", test="best", cells=["phi_2", "phi_15"]),
            FindingConfig(claim="Gemma beats Phi-1.5 on GQA", test="better",
                          cells=["gemma_2b", "phi_15"], benchmarks=["GQA"]),
            FindingConfig(claim="Gemma and Phi-1.5 alike on POPE", test="similar",
                          cells=["gemma_2b", "phi_15"], benchmarks=["POPE"]),
        ],
    )  # fmt: skip

    # Each training's cost: seed s of every cell ran at 100 * (s + 1) tokens/s.
    costs = {f"train-{cell}-{seed}": {"align/tokens_per_sec": 100.0 * (seed + 1),
                                      "finetune/train_s": 10.0, "finetune/other": 1.0}
             for cell in CELLS for seed in range(3)}  # fmt: skip
    out = write_report(study, report, units.__getitem__, tmp_path, scale="mini", n_resamples=500,
                       costs=costs.__getitem__)  # fmt: skip

    names = {p.name for p in out.files}
    assert {"table.md", "table.tex", "table.csv", "differences.md", "findings.md", "figure.png",
            "figure.pdf", "report.md"} <= names  # fmt: skip
    for name in ("table.md", "differences.md", "findings.md"):
        text = (tmp_path / name).read_text()
        if os.environ.get("MSL_ABLATE_UPDATE_GOLDEN"):
            (GOLDEN / f"report_{name}").write_text(text)
        assert text == (GOLDEN / f"report_{name}").read_text(), name
    with Image.open(tmp_path / "figure.png") as image:
        assert image.size[0] > 400 and image.size[1] > 200
    assert (tmp_path / "figure.pdf").read_bytes().startswith(b"%PDF")
    csv = pd.read_csv(tmp_path / "table.csv", index_col=0)
    assert list(csv.index) == ["phi_2", "gemma_2b", "phi_15"] and (csv["seeds"] == 3).all()
    cost = (tmp_path / "cost.md").read_text().splitlines()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in cost]
    assert cells[0] == ["lm", "align tokens/s", "finetune train s"]  # "other" is not shown
    assert cells[2] == ["phi_2", "200.0", "10.0"]  # the mean over 3 seeds
    assert "## Training cost" in (tmp_path / "report.md").read_text()
    verdicts = {v.claim: v.reproduced for v in out.verdicts}
    assert verdicts == {"Phi-like best": True, "Gemma beats Phi-1.5 on GQA": False,
                        "Gemma and Phi-1.5 alike on POPE": True}  # fmt: skip


def test_paper_scale_adds_published_rows_and_skips_findings(fixture, tmp_path: Path) -> None:
    store, units = fixture
    study = load_study(store, STUDY, "lm")
    report = _report(title="Fixture", axis="lm", published={"phi_2": "Mipha-3B"},
                     findings=[FindingConfig(claim="x", test="best", cells=["phi_2"])])  # fmt: skip
    out = write_report(study, report, units.__getitem__, tmp_path, scale="paper", n_resamples=50)
    table = (tmp_path / "table.md").read_text()
    assert "phi_2 (published: Mipha-3B)" in table and "63.9" in table  # Mipha-3B's GQA
    assert not out.verdicts and not (tmp_path / "findings.md").exists()


def test_factorial_study_reports_main_effects(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows, units = [], {}
    levels = {"vf_lf": ("frozen", "full"), "vf_ll": ("frozen", "lora"),
              "vt_lf": ("tuned", "full"), "vt_ll": ("tuned", "lora")}  # fmt: skip
    for cell, (vision, _) in levels.items():
        for seed in range(3):
            run_id = f"{cell}-{seed}"
            units[run_id] = _units(rng, "gqa", 0.75 if vision == "tuned" else 0.45, 400)
            value = HEADLINES_FROM_UNITS["gqa"]({"score": units[run_id]["score"].to_numpy()})
            rows.append({"study": "f", "strategy": cell, "seed": seed, "benchmark": "gqa",
                         "scorer": "gqa", "metric": "accuracy", "value": value, "protocol": "p",
                         "training_key": run_id, "evaluation_key": run_id,
                         "evaluation_run_id": run_id})  # fmt: skip
    study = load_study(pd.DataFrame(rows), "f", "strategy")
    report = _report(title="F", axis="strategy", factors={
        "vision": {c: v for c, (v, _) in levels.items()},
        "lm": {c: m for c, (_, m) in levels.items()}})  # fmt: skip
    write_report(study, report, units.__getitem__, tmp_path, scale="mini", n_resamples=50)
    effects = (tmp_path / "effects.md").read_text()
    vision_p = float(effects.split("| vision ")[1].split("|")[1])
    lm_p = float(effects.split("| lm ")[1].split("|")[1])
    assert vision_p < 0.001 < lm_p


def test_unknown_study_names_the_studies_there(fixture) -> None:
    with pytest.raises(StudyError, match="other-mini"):
        load_study(fixture[0], "nope", "lm")


def test_the_radar_scales_each_benchmark_and_draws_chance_and_published_rows(tmp_path) -> None:
    means = pd.DataFrame({"GQA": [40.0, 20.0], "POPE": [80.0, 70.0], "MME-P": [900.0, 300.0]},
                         index=["siglip", "clip"])  # fmt: skip
    chance = pd.Series({"GQA": 10.0, "POPE": 50.0, "MME-P": 375.0})
    rows, dashed = radar_rows(means, chance, {"siglip": "Mipha-3B"})
    assert list(rows) == ["siglip", "clip", "(chance)", "Mipha-3B (published)"]
    assert dashed == ("(chance)", "Mipha-3B (published)") and rows["clip"]["MME-P"] == 300.0
    assert rows["Mipha-3B (published)"]["MME-P"] == 1488.9

    paths = radar(rows, ["GQA", "POPE", "MME-P"], "t", tmp_path / "radar", dashed=dashed)

    assert [p.name for p in paths] == ["radar.png", "radar.pdf"]
    with Image.open(paths[0]) as image:
        assert image.size[0] > 400
    with pytest.raises(ValueError, match="at least 3 benchmarks"):
        radar(rows, ["GQA", "POPE"], "t", tmp_path / "two")


def test_a_best_place_within_the_noise_is_not_a_reproduction(fixture) -> None:
    store, units = fixture
    study = load_study(store[store["lm"] != "phi_2"], STUDY, "lm")  # gemma_2b and phi_15: close
    best = study.mean_ranks().index[0]

    verdict = check_finding(study, "x", "best", [best], [], units.__getitem__, n_resamples=500)

    assert verdict.reproduced is False
    assert "better beyond the 95% interval on 0 of 2 benchmarks" in verdict.evidence
