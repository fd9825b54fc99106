"""``msl-ablate report STUDY [overrides] | --all``: a study's table, figure and findings.

``STUDY`` names a sweep of ``sweeps/`` (``fig2_lm``); the report of its ``report`` section is
built from the results store and the evaluations' per-unit outcomes in MLflow, into
``results/reports/<study>-<scale>/``. Overrides pick the scale as for ``train`` (``preset=paper``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from msl_ablate.config.compose import absolutize_paths, compose, sweeps_dir
from msl_ablate.results import store
from msl_ablate.results.costs import training_costs
from msl_ablate.results.report import write_overview, write_report
from msl_ablate.results.study import StudyError, load_study
from msl_ablate.results.units import MissingUnitsError, unit_table
from msl_ablate.utils.errors import ConfigError
from msl_ablate.utils.logging import setup_console_logging


def studies(folder: Path) -> list[str]:
    """The sweeps of ``folder`` that have a ``report`` section, by name."""
    return sorted(p.stem for p in folder.glob("*.yaml") if "\nreport:" in p.read_text())


def report_one(name: str, overrides: list[str], folder: Path, n_resamples: int):
    """Write one study's report; returns ``(study, scale, reports folder)``."""
    cfg = compose(overrides, name, folder)
    if cfg.get("report") is None:
        raise ConfigError(f"{folder / name}.yaml has no `report` section")
    absolutize_paths(cfg)
    results_dir = Path(cfg.paths.results_dir)
    df = store.load(results_dir / store.STORE_FILE)
    report = cfg.report
    study = load_study(df, cfg.study, report.axis, order=list(report.paper_order))
    aliases = {k: str(v) for k, v in cfg.resolutions.items()} if report.axis == "image_size" else {}
    uri = cfg.tracking.tracking_uri
    out = write_report(
        study,
        report,
        lambda run_id: unit_table(uri, run_id),
        results_dir / "reports" / cfg.study,
        scale=cfg.scale,
        aliases=aliases,
        n_resamples=n_resamples,
        costs=lambda run_id: training_costs(uri, run_id),
    )
    print(
        f"{cfg.study}: {len(study.cells)} cells x {len(study.columns)} benchmarks -> {out.out_dir}"
    )
    for verdict in out.verdicts:
        shown = {True: "reproduced", False: "NOT reproduced", None: "not measured"}
        print(f"  {shown[verdict.reproduced]}: {verdict.claim}")
    return study, cfg.scale, results_dir / "reports"


def main(argv: list[str] | None = None) -> int:
    """Write the report of one study (or of every sweep with --all) from the results store."""
    parser = argparse.ArgumentParser(prog="msl-ablate report", description=main.__doc__)
    parser.add_argument("study", nargs="?", help="a sweep of sweeps/ with a report section")
    parser.add_argument("overrides", nargs="*", help="overrides, e.g. preset=paper")
    parser.add_argument("--all", action="store_true", help="every sweep with a report section")
    parser.add_argument("--sweeps-dir", type=Path, default=None, help="default: sweeps/")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    setup_console_logging()
    # One artifact per evaluation is read: MLflow's per-download progress bars would flood.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    folder = args.sweeps_dir or sweeps_dir()
    if args.all:
        names, overrides = studies(folder), ([args.study] if args.study else []) + args.overrides
    elif args.study:
        names, overrides = [args.study], args.overrides
    else:
        parser.error(f"name a study ({', '.join(studies(folder))}) or pass --all")
    failed, done = 0, []
    for name in names:
        try:
            done.append(report_one(name, overrides, folder, args.resamples))
        except StudyError as err:
            print(f"msl-ablate report {name}: {err}", file=sys.stderr)
            failed += not args.all  # --all: a study not run yet is skipped, not an error
        except (ConfigError, MissingUnitsError, store.StoreError) as err:
            print(f"msl-ablate report {name}: {err}", file=sys.stderr)
            failed += 1
    if args.all and done:
        scale, reports = done[0][1], done[0][2]
        paths = write_overview(
            [study for study, _, _ in done], scale, reports / f"overview-{scale}"
        )
        if paths:
            print(f"overview of {len(done)} studies -> {paths[0]}")
    return 2 if failed else 0
