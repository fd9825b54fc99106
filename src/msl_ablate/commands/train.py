"""``msl-ablate train [overrides]``: the Hydra entry point. Check, run, return the sweep metric.

Relaunchable: ``sys.argv`` is never rewritten, so Lightning's DDP launcher (which starts the
other ranks by re-running ``sys.argv``) works, and so does
``torchrun --nproc_per_node=N -m msl_ablate.commands.train [overrides]``.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from hydra._internal.utils import _run_hydra, get_args_parser
from omegaconf import DictConfig

from msl_ablate.config.compose import absolutize_paths, config_dir, order_stages
from msl_ablate.config.schema import register_schemas
from msl_ablate.experiment.checks import check
from msl_ablate.utils.errors import ConfigError, DataError
from msl_ablate.utils.logging import get_logger, route_library_logs

log = get_logger(__name__)

EXIT_BAD_CONFIG = 2


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Check the config and run the experiment (shared by the CLI and the tests).

    Returns:
        ``experiment.run.run``'s result: run key, MLflow run id, metrics, store row.
    """
    # Frozen modules are kept in eval mode on purpose; tiny test datasets trip the logging hint.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    absolutize_paths(cfg)
    order_stages(cfg)
    check(cfg)
    from msl_ablate.experiment.run import run  # torch and Lightning load only for a valid config

    route_library_logs()  # after Lightning's import, which attaches its own console handler
    return run(cfg)


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``optimized_metric`` for a Hydra sweeper (None when unset).

    Raises:
        KeyError: The metric was not logged (naming the metrics that were).
    """
    if cfg.optimized_metric is None:
        return None
    if cfg.optimized_metric not in metrics:
        raise KeyError(
            f"optimized_metric={cfg.optimized_metric!r} was not logged by this run; logged: "
            f"{sorted(metrics)}"
        )
    return metrics[cfg.optimized_metric]


def task(cfg: DictConfig) -> float | None:
    """One job of ``train`` (a single run or one point of a ``-m`` sweep)."""
    try:
        result = run_train(cfg)
    except (ConfigError, DataError) as err:  # bad config or data: the message says it all
        print(f"msl-ablate train: {err}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None
    return optimized_value(cfg, result["metrics"])


def main(argv: list[str] | None = None) -> None:
    """Parse Hydra's command line (default ``sys.argv[1:]``) and run ``task``.

    ``hydra.main`` reads ``sys.argv`` itself, which holds the ``train`` subcommand; calling the
    runner it wraps with parsed arguments leaves ``sys.argv`` as the process was started.
    """
    register_schemas()
    parser = get_args_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _run_hydra(
        args=args,
        args_parser=parser,
        task_function=task,
        config_path=str(config_dir()),
        config_name="train",
    )


if __name__ == "__main__":
    main()
