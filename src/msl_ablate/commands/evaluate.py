"""``msl-ablate evaluate --run RUN [--benchmarks a,b] [overrides]``: benchmark a finished run.

``RUN`` is a training key (``outputs/trainings/<training_key>/``) or an MLflow run id (its
training run or one of its evaluation runs). The config is the one saved with the trained
model, and the run goes through the same stage graph as ``train`` (``experiment.run.run`` with
``train=False``: every stage must be finished). Each benchmark not yet evaluated under the same
protocol is generated and scored (the held-out split too, named ``eval.split``) and recorded as
an evaluation run nested under the training run, with its rows in the results store; one
already evaluated under that protocol is not run again.

``paths.*`` and ``tracking.*`` come from the command line (defaults + overrides), like
``msl-ablate results``: they say where the run is now. Everything else comes from the run's
config; ``eval.*``, ``benchmarks=`` (the suite) and ``num_threads`` overrides apply on top of it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from omegaconf import DictConfig

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.checks import check
from msl_ablate.experiment.layout import RUN_CONFIG
from msl_ablate.experiment.runs import check_overrides, load_run_config, locate_run
from msl_ablate.utils.errors import ConfigError, DataError
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

EXIT_BAD_INPUT = 2
# Root keys an override may set besides WHERE_KEYS (where the run is now): how to evaluate it.
HOW_KEYS = ("eval", "benchmarks", "num_threads")  # `benchmarks` is the suite group (eval.suite)
HOW_HINT = "eval.*, benchmarks= and num_threads"


def select_benchmarks(cfg: DictConfig, names: list[str]) -> None:
    """Evaluate only ``names``: suite benchmarks, and the held-out split if its name is there."""
    cfg.eval.split = cfg.eval.split if cfg.eval.split in names else None
    cfg.eval.benchmarks = [name for name in names if name != cfg.eval.split]


def evaluate_run(run: str, benchmarks: list[str] | None, overrides: list[str]) -> dict[str, Any]:
    """Evaluate a trained model on benchmarks not yet evaluated under the same protocol.

    Args:
        run: Training key or MLflow run id.
        benchmarks: Names to run: benchmarks of ``eval.suite`` and/or ``eval.split`` (default:
            the run's ``eval.split`` and ``eval.benchmarks``).
        overrides: ``paths.*``, ``tracking.*``, ``eval.*``, ``benchmarks=``, ``num_threads``.

    Returns:
        ``experiment.run.run``'s result with ``run_dir``, ``stage`` and ``benchmarks``
        (name -> scorer) added.

    Raises:
        ConfigError: Bad overrides or benchmark names.
        FileNotFoundError: No such run, or a stage of it is not finished.
    """
    from msl_ablate.experiment.run import run as run_graph

    check_overrides(overrides, HOW_KEYS, "evaluate", HOW_HINT)
    current = compose(overrides)
    absolutize_paths(current)
    key, run_dir = locate_run(run, current)
    cfg = load_run_config(run_dir, current, overrides, HOW_KEYS)
    if benchmarks is not None:
        select_benchmarks(cfg, benchmarks)
    check(cfg)
    result = run_graph(cfg, train=False)
    if result["training_key"] != key:
        raise RuntimeError(
            f"{run_dir / RUN_CONFIG} now keys to training {result['training_key']}, not {key}: "
            f"the code that computes keys changed since it was trained"
        )
    result["run_dir"] = run_dir
    result["stage"] = list(cfg.strategy.stages)[-1]
    held_out = {} if cfg.eval.split is None else {cfg.eval.split: "exact_match"}
    suite = {name: cfg.eval.suite.benchmarks[name].scorer for name in cfg.eval.benchmarks}
    result["benchmarks"] = held_out | suite
    return result


def report(result: dict[str, Any]) -> str:
    """One line per benchmark: its headline metric and how many questions were answered."""
    from msl_ablate.evaluation.headline import HEADLINE_METRICS

    stage, metrics = result["stage"], result["metrics"]
    lines = [
        f"training {result['training_key']} (MLflow {result['mlflow_run_id'] or 'none'}), stage "
        f"{stage}; answers and metrics in {result['run_dir']}/evals/<benchmark>-<protocol>/",
        f"  {'benchmark':<10} {'metric':<18} {'value':>8} {'questions':>9} {'missing':>7}",
    ]
    for name, scorer in result["benchmarks"].items():
        if scorer is None:
            lines.append(f"  {name:<10} (no local metric; answers exported)")
            continue
        metric = HEADLINE_METRICS[scorer][0]
        value = metrics.get(f"{stage}/{name}/{metric}", float("nan"))
        n, missing = (int(metrics[f"{stage}/{name}/{k}"]) for k in ("n_questions", "n_missing"))
        lines.append(f"  {name:<10} {metric:<18} {value:8.2f} {n:9d} {missing:7d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msl-ablate evaluate``; returns the exit code (2 on bad input)."""
    from msl_ablate.utils.logging import setup_console_logging

    parser = argparse.ArgumentParser(prog="msl-ablate evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="training key or MLflow run id")
    parser.add_argument(
        "--benchmarks", help="comma-separated benchmarks of eval.suite, and/or eval.split (eval)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="paths.*, tracking.*, eval.*, benchmarks=, num_threads"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: return the code instead of exiting
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    setup_console_logging()
    names = None if args.benchmarks is None else [b for b in args.benchmarks.split(",") if b]
    try:
        result = evaluate_run(args.run, names, args.overrides)
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"msl-ablate evaluate: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
