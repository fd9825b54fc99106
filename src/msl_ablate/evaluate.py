"""``msl-ablate evaluate --run RUN [--benchmarks a,b] [overrides]``: benchmark a finished run.

``RUN`` is a run key (``outputs/runs/<run_key>/``) or an MLflow run id. The model is rebuilt
from the run's saved ``config.yaml``: the same builders, each stage's trainability replayed
(``apply_stage``, so LoRA wrapping happens) and its ``trainable.safetensors`` loaded in order.
Then every benchmark is generated and scored, the metrics are logged to the run's MLflow run
(metrics only) and its results-store row is rebuilt from MLflow.

``paths.*`` and ``tracking.*`` come from the command line (defaults + overrides), like
``msl-ablate results``: they say where the run is now. Everything else comes from the run's
config; ``eval.*`` overrides apply on top of it (batch size, suite sizes, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.utils.errors import ConfigError, DataError
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

EXIT_BAD_INPUT = 2
# Override prefixes that apply to the run's saved config (paths/tracking locate the run).
RUN_OVERRIDES = ("eval.", "num_threads")


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

    from msl_ablate.experiment import RUN_CONFIG

    runs_dir = Path(current.paths.output_dir) / "runs"
    client = _client(current.tracking)
    if (runs_dir / run / RUN_CONFIG).is_file():
        if client is None:
            return run, runs_dir / run, None
        return run, runs_dir / run, _newest_finished(client, current.tracking.experiment, run)
    if client is not None:
        try:
            key = client.get_run(run).data.tags.get("run_key")
        except MlflowException:
            key = None
        if key is not None and (runs_dir / key / RUN_CONFIG).is_file():
            return key, runs_dir / key, run
        if key is not None:
            raise FileNotFoundError(
                f"--run {run!r}: MLflow run of run key {key!r}, but {runs_dir / key / RUN_CONFIG} "
                f"does not exist (pass the paths.root the run was trained with)"
            )
    known = sorted(p.parent.name for p in runs_dir.glob(f"*/{RUN_CONFIG}"))
    raise FileNotFoundError(
        f"--run {run!r} is neither a run key with {runs_dir}/<run_key>/{RUN_CONFIG} "
        f"(known: {known or 'none'}) nor an MLflow run id in {current.tracking.tracking_uri} "
        f"(set paths.root=... / tracking.tracking_uri=... to where the run is)"
    )


def load_run_config(run_dir: Path, current: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's saved config with today's ``paths``/``tracking`` and the ``eval`` overrides.

    Raises:
        ConfigError: The saved config does not fit the schema (e.g. a key removed since).
    """
    from omegaconf.errors import OmegaConfBaseException

    from msl_ablate.config.schema import TrainConfig
    from msl_ablate.experiment import RUN_CONFIG

    try:  # typed like a composed config (enums, defaults) and checked against the schema
        cfg = OmegaConf.merge(
            OmegaConf.structured(TrainConfig), OmegaConf.load(run_dir / RUN_CONFIG)
        )
    except OmegaConfBaseException as err:
        raise ConfigError(f"{run_dir / RUN_CONFIG} does not fit the config schema: {err}") from err
    where = {g: OmegaConf.to_container(current[g], resolve=True) for g in ("paths", "tracking")}
    cfg = OmegaConf.merge(cfg, where)  # both groups have fixed keys: the merge replaces them
    for key in map(_override_key, overrides):
        if key == "benchmarks":  # another suite option (conf/benchmarks/)
            cfg.eval.suite = current.eval.suite
        elif key.startswith(RUN_OVERRIDES):
            OmegaConf.update(cfg, key, OmegaConf.select(current, key), force_add=True)
    return cfg


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+")


def check_overrides(overrides: list[str]) -> None:
    """Reject overrides of the model: it comes from the run's ``config.yaml``.

    Raises:
        ConfigError: Listing every override that is not ``paths.*``, ``tracking.*``,
            ``eval.*``, ``benchmarks=`` or ``num_threads``.
    """
    allowed = ("paths.", "tracking.", "benchmarks", *RUN_OVERRIDES)
    bad = [o for o in overrides if not _override_key(o).startswith(allowed)]
    if bad:
        raise ConfigError(
            [
                f"override {o!r}: evaluate takes only paths.*, tracking.*, eval.*, benchmarks= and "
                f"num_threads (the model is the run's, from outputs/runs/<run_key>/config.yaml)"
                for o in bad
            ]
        )


def restore_vlm(cfg: DictConfig, run_dir: Path):
    """Rebuild the run's model and load every stage's trainable weights, in stage order."""
    from msl_ablate.experiment import STAGE_CHECKPOINT
    from msl_ablate.models.assemble import build_vlm
    from msl_ablate.training.strategy import apply_stage, load_trainable

    vlm = build_vlm(cfg)
    for name, stage in cfg.strategy.stages.items():
        apply_stage(vlm, stage)  # wraps LoRA where the stage did, so the saved keys exist
        load_trainable(vlm, run_dir / name / STAGE_CHECKPOINT)
    return vlm


def evaluate_run(run: str, benchmarks: list[str] | None, overrides: list[str]) -> dict[str, Any]:
    """Evaluate a finished run on benchmarks; log to its MLflow run and update the store.

    Args:
        run: Run key or MLflow run id.
        benchmarks: Benchmarks of ``eval.suite`` (default: the run's ``eval.benchmarks``).
        overrides: ``paths.*``, ``tracking.*``, ``eval.*`` overrides.

    Returns:
        ``{"run_key", "mlflow_run_id", "run_dir", "stage", "benchmarks", "metrics", "row"}``
        (``row``: the store row, None without an MLflow run).

    Raises:
        ConfigError: Bad overrides or benchmark names.
        FileNotFoundError: No such run, or a stage checkpoint is missing.
    """
    import torch

    from msl_ablate.config.compose import compose
    from msl_ablate.evaluation.suite_eval import eval_problems, evaluate_suite
    from msl_ablate.results import store
    from msl_ablate.train import absolutize_paths

    check_overrides(overrides)
    current = compose(overrides)
    absolutize_paths(current)
    key, run_dir, run_id = locate_run(run, current)
    cfg = load_run_config(run_dir, current, overrides)
    if benchmarks is not None:
        cfg.eval.benchmarks = benchmarks
    problems = eval_problems(cfg)
    if problems:
        raise ConfigError(problems)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    vlm = restore_vlm(cfg, run_dir)
    stage = list(cfg.strategy.stages)[-1]
    metrics = evaluate_suite(cfg, vlm, run_dir, stage)
    result: dict[str, Any] = {
        "run_key": key,
        "mlflow_run_id": run_id,
        "run_dir": run_dir,
        "stage": stage,
        "benchmarks": list(cfg.eval.benchmarks),
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
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run_id, metrics=batch[i : i + 1000])
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
    for name in result["benchmarks"]:
        metric = HEADLINE_METRICS.get(name, ("accuracy", ""))[0]
        if f"{stage}/{name}/n_questions" not in metrics:
            lines.append(f"  {name:<10} (no local metric; answers exported)")
            continue
        value = metrics.get(f"{stage}/{name}/{metric}", float("nan"))
        n, missing = (int(metrics[f"{stage}/{name}/{k}"]) for k in ("n_questions", "n_missing"))
        lines.append(f"  {name:<10} {metric:<18} {value:8.2f} {n:9d} {missing:7d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msl-ablate evaluate``; returns the exit code (2 on bad input)."""
    from msl_ablate.utils.logging import setup_console_logging

    parser = argparse.ArgumentParser(prog="msl-ablate evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run key or MLflow run id")
    parser.add_argument("--benchmarks", help="comma-separated benchmarks of eval.suite")
    parser.add_argument("overrides", nargs="*", help="paths.*, tracking.*, eval.* overrides")
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
