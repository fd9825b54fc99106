"""``msl-ablate evaluate --run RUN [--benchmarks a,b] [overrides]``: benchmark a finished run.

``RUN`` is a run key (``outputs/runs/<run_key>/``) or an MLflow run id. The model is rebuilt
from the run's saved ``config.yaml`` and brought to the end of its strategy by the stage loop
that ``train`` uses (``experiment.stages.run_stages``, replaying finished stages only). Then
every benchmark is generated and scored (the held-out split too, named ``eval.split``), the
metrics are logged to the run's MLflow run and its results-store row is rebuilt from MLflow.

``paths.*`` and ``tracking.*`` come from the command line (defaults + overrides), like
``msl-ablate results``: they say where the run is now. Everything else comes from the run's
config; ``eval.*``, ``benchmarks=`` (the suite) and ``num_threads`` overrides apply on top of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.checks import check
from msl_ablate.experiment.layout import RUN_CONFIG, RunLayout, runs_dir
from msl_ablate.utils.errors import ConfigError, DataError
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

EXIT_BAD_INPUT = 2
# Root keys an override may set: where the run is now, and how to evaluate it. The model,
# data and strategy are the run's own (its config.yaml).
WHERE_KEYS = ("paths", "tracking")
HOW_KEYS = ("eval", "benchmarks", "num_threads")  # `benchmarks` is the suite group (eval.suite)


def _client(tracking: DictConfig):
    """An MLflow client, or None when a local sqlite store does not exist (never create one)."""
    from mlflow.tracking import MlflowClient

    uri = tracking.tracking_uri
    if not tracking.enabled or (
        uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()
    ):
        return None
    return MlflowClient(tracking_uri=uri)


def _newest_finished(client, experiment: str, key: str) -> str | None:
    """The id of the newest finished MLflow run of a run key (the one the store shows)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.run_key = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def locate_run(run: str, current: DictConfig) -> tuple[str, Path, str | None]:
    """Find a run's key, folder and MLflow run id from a run key or an MLflow run id.

    Args:
        run: The ``--run`` argument.
        current: The composed command-line config (``paths``, ``tracking``).

    Returns:
        ``(run_key, run_dir, mlflow_run_id or None)``; the newest finished MLflow run of the
        key when given a key.

    Raises:
        FileNotFoundError: Neither a run folder with a ``config.yaml`` nor an MLflow run.
    """
    from mlflow.exceptions import MlflowException

    runs = runs_dir(current.paths.output_dir)
    client = _client(current.tracking)
    if (runs / run / RUN_CONFIG).is_file():
        if client is None:
            return run, runs / run, None
        return run, runs / run, _newest_finished(client, current.tracking.experiment, run)
    if client is not None:
        try:
            key = client.get_run(run).data.tags.get("run_key")
        except MlflowException:
            key = None
        if key is not None and (runs / key / RUN_CONFIG).is_file():
            return key, runs / key, run
        if key is not None:
            raise FileNotFoundError(
                f"--run {run!r}: MLflow run of run key {key!r}, but {runs / key / RUN_CONFIG} "
                f"does not exist (pass the paths.root the run was trained with)"
            )
    known = sorted(p.parent.name for p in runs.glob(f"*/{RUN_CONFIG}"))
    raise FileNotFoundError(
        f"--run {run!r} is neither a run key with {runs}/<run_key>/{RUN_CONFIG} "
        f"(known: {known or 'none'}) nor an MLflow run id in {current.tracking.tracking_uri} "
        f"(set paths.root=... / tracking.tracking_uri=... to where the run is)"
    )


def override_keys(overrides: list[str]) -> list[str]:
    """The config key (or group) each override sets, as Hydra parses it."""
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]


def check_overrides(overrides: list[str]) -> None:
    """Reject overrides of the model: it comes from the run's ``config.yaml``.

    Raises:
        ConfigError: Listing every override whose root key is not in ``WHERE_KEYS + HOW_KEYS``.
    """
    allowed = (*WHERE_KEYS, *HOW_KEYS)
    bad = [
        o for o, key in zip(overrides, override_keys(overrides), strict=True)
        if key.split(".")[0] not in allowed
    ]  # fmt: skip
    if bad:
        raise ConfigError(
            [
                f"override {o!r}: evaluate takes only {', '.join(f'{k}.*' for k in WHERE_KEYS)}, "
                f"eval.*, benchmarks= and num_threads (the model is the run's, from "
                f"outputs/runs/<run_key>/config.yaml)"
                for o in bad
            ]
        )


def load_run_config(run_dir: Path, current: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's saved config with today's ``paths``/``tracking`` and the ``HOW_KEYS`` overrides.

    Raises:
        ConfigError: The saved config does not fit the schema (e.g. a key removed since).
    """
    from omegaconf.errors import OmegaConfBaseException

    from msl_ablate.config.schema import TrainConfig

    path = RunLayout(run_dir).config
    try:  # typed like a composed config (enums, defaults) and checked against the schema
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path} does not fit the config schema: {err}") from err
    where = {g: OmegaConf.to_container(current[g], resolve=True) for g in WHERE_KEYS}
    cfg = OmegaConf.merge(cfg, where)  # both groups have fixed keys: the merge replaces them
    for key in override_keys(overrides):
        if key == "benchmarks":  # another suite option (conf/benchmarks/)
            cfg.eval.suite = current.eval.suite
        elif key.split(".")[0] in HOW_KEYS:
            OmegaConf.update(cfg, key, OmegaConf.select(current, key), force_add=True)
    return cfg


def select_benchmarks(cfg: DictConfig, names: list[str]) -> None:
    """Evaluate only ``names``: suite benchmarks, and the held-out split if its name is there."""
    cfg.eval.split = cfg.eval.split if cfg.eval.split in names else None
    cfg.eval.benchmarks = [name for name in names if name != cfg.eval.split]


def evaluate_run(run: str, benchmarks: list[str] | None, overrides: list[str]) -> dict[str, Any]:
    """Evaluate a finished run on benchmarks; log to its MLflow run and update the store.

    Args:
        run: Run key or MLflow run id.
        benchmarks: Names to run: benchmarks of ``eval.suite`` and/or ``eval.split`` (default:
            the run's ``eval.split`` and ``eval.benchmarks``).
        overrides: ``paths.*``, ``tracking.*``, ``eval.*``, ``benchmarks=``, ``num_threads``.

    Returns:
        ``{"run_key", "mlflow_run_id", "run_dir", "stage", "benchmarks", "metrics", "row"}``
        (``benchmarks``: name -> scorer; ``row``: the store row, None without an MLflow run).

    Raises:
        ConfigError: Bad overrides or benchmark names.
        FileNotFoundError: No such run, or a stage of it is not finished.
    """
    import torch

    from msl_ablate.evaluation.run_benchmarks import benchmark_specs, evaluate_benchmarks
    from msl_ablate.experiment.stages import run_stages
    from msl_ablate.models.assemble import build_vlm, max_sequence_length
    from msl_ablate.results import store
    from msl_ablate.tracking.mlflow_run import MlflowRun

    check_overrides(overrides)
    current = compose(overrides)
    absolutize_paths(current)
    key, run_dir, run_id = locate_run(run, current)
    cfg = load_run_config(run_dir, current, overrides)
    if benchmarks is not None:
        select_benchmarks(cfg, benchmarks)
    check(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    layout = RunLayout(run_dir)
    vlm = build_vlm(cfg)
    specs = benchmark_specs(cfg)
    run_stages(cfg, vlm, layout, max_sequence_length(cfg, vlm), train=False)
    stage = list(cfg.strategy.stages)[-1]
    metrics = evaluate_benchmarks(cfg, vlm, specs, layout.eval_dir, stage)
    result: dict[str, Any] = {
        "run_key": key,
        "mlflow_run_id": run_id,
        "run_dir": run_dir,
        "stage": stage,
        "benchmarks": {spec.name: spec.scorer for spec in specs},
        "metrics": metrics,
        "row": None,
    }
    client = _client(cfg.tracking)
    if run_id is None or client is None:
        log.warning(
            "Run %s has no finished MLflow run in %s: metrics not logged",
            key,
            cfg.tracking.tracking_uri,
        )
    else:
        tracker = MlflowRun(cfg.tracking, run_id=run_id)
        tracker.log_metrics(metrics)
        result["row"] = store.row_from_run(client.get_run(run_id))
        store.upsert(Path(cfg.paths.results_dir) / store.STORE_FILE, result["row"])
    return result


def report(result: dict[str, Any]) -> str:
    """One line per benchmark: its headline metric and how many questions were answered."""
    from msl_ablate.evaluation.headline import HEADLINE_METRICS

    stage, metrics = result["stage"], result["metrics"]
    lines = [
        f"run {result['run_key']} (MLflow {result['mlflow_run_id'] or 'none'}), stage {stage}; "
        f"all metrics in {result['run_dir']}/eval/<benchmark>/metrics.json",
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
    parser.add_argument("--run", required=True, help="run key or MLflow run id")
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
