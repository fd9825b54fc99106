"""``msl-ablate status [--config-dir D --config-name N] [overrides]``: where a sweep stands.

Takes the arguments of ``msl-ablate train -m``: the primary config's ``hydra.sweeper.params``
and any ``key=a,b`` on the command line are expanded into jobs as Hydra's basic sweeper does.
For each job it prints done / running / failed / todo, each stage's key and state (finished,
``step k/N`` of a resumable checkpoint, or todo), whether it was reused from another run or is
shared by several jobs, where each artifact is, and how many evaluations are recorded.
Nothing is trained or written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.compose import job_labels
from msl_ablate.experiment.checks import checked_sweep
from msl_ablate.utils.errors import ConfigError, DataError

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Print the state of every job of a sweep (or of one config); returns the exit code."""
    parser = argparse.ArgumentParser(prog="msl-ablate status", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", help="folder of the primary config, e.g. sweeps")
    parser.add_argument("--config-name", default="train", help="primary config (default train)")
    parser.add_argument("-m", "--multirun", action="store_true", help="accepted, as for train")
    parser.add_argument("overrides", nargs="*", help="overrides; key=a,b sweeps a key")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    from msl_ablate.utils.logging import setup_console_logging

    setup_console_logging()
    try:
        jobs, configs = checked_sweep(args.overrides, args.config_name, args.config_dir)
    except (ConfigError, DataError) as err:
        print(f"msl-ablate status: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report(jobs, configs))
    return 0


def report(jobs: list[list[str]], configs: list) -> str:
    """The status text of a sweep's jobs."""
    from msl_ablate.experiment.status import (
        describe_stage,
        stage_use,
        summary_counts,
        training_state,
    )
    from msl_ablate.tracking.mlflow_run import Tracker

    trackers: dict[tuple[str, str], Tracker] = {}
    states = []
    for cfg in configs:
        where = (cfg.tracking.tracking_uri, cfg.tracking.experiment)
        if cfg.tracking.enabled and where not in trackers:
            trackers[where] = Tracker(cfg.tracking)
        states.append(training_state(cfg, trackers.get(where)))
    use = stage_use(states)
    counts = summary_counts(states)
    study = configs[0].study if configs else "?"
    lines = [
        f"study {study}: {len(states)} job(s): "
        + ", ".join(f"{n} {state}" for state, n in counts.items()),
        f"outputs: {configs[0].paths.output_dir}" if configs else "",
    ]
    for i, (shown, cfg, state) in enumerate(zip(job_labels(jobs), configs, states, strict=True)):
        run = (
            "no MLflow run"
            if state.mlflow is None
            else f"MLflow {state.mlflow[0]} ({state.mlflow[1]})"
        )
        lines.append(f"[{i}] {shown}: {state.state.upper()}  training {state.layout.key}  {run}")
        root = Path(cfg.paths.output_dir)
        for stage in state.stages:
            lines.append("      " + describe_stage(stage, state, use[stage.layout.key], root))
        done, asked = state.evaluations
        evals = state.layout.evals_dir
        lines.append(
            f"      {'evals':<9} {done}/{asked} recorded{'':<27} {evals.relative_to(root)}"
        )
        if state.failure:
            lines.append(f"      failure: {state.failure.splitlines()[0][:200]}")
        others = [s for s in state.studies if s != cfg.study]
        if others:
            joined = "" if cfg.study in state.studies else (
                f"; not yet in {cfg.study}'s results (`train` adds it, training nothing)")  # fmt: skip
            lines.append(f"      {'shared':<9} with {', '.join(others)}{joined}")
    return "\n".join(line for line in lines if line)
