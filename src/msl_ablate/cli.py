"""The ``msl-ablate`` command: one subcommand per job."""

from __future__ import annotations

import sys

USAGE = """usage: msl-ablate <command> [args]

commands:
  train [overrides]       train and evaluate one config (Hydra; -m for sweeps)
  describe [overrides]    print the composed model: parameters, image tokens, checkpoints
  evaluate --run RUN      benchmark a finished run (run key or MLflow id; --benchmarks a,b)
  score BENCHMARK ...     score an answer file with a benchmark's official metric
  results [--rebuild]     print the results store (rebuilt from MLflow with --rebuild)
"""


def _validate_overrides(overrides: list[str]) -> None:
    """Compose and check a single run's config up front, for one clear error message."""
    from msl_ablate.config.checks import check_config
    from msl_ablate.config.compose import compose
    from msl_ablate.utils.errors import ConfigError

    if any(o.startswith("-") or o.startswith("hydra") for o in overrides):
        return  # Hydra flags and sweeps are validated by Hydra itself
    try:
        check_config(compose(overrides))
    except ConfigError as err:
        print(f"msl-ablate: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``msl-ablate <command>``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        _validate_overrides(rest)
        from msl_ablate import train

        sys.argv = [f"{sys.argv[0]} train", *rest]
        train.main()
        return 0
    if command == "describe":
        from msl_ablate.describe import main as describe_main

        return describe_main(rest)
    if command == "evaluate":
        from msl_ablate.evaluate import main as evaluate_main

        return evaluate_main(rest)
    if command == "score":
        from msl_ablate.evaluation.scoring.cli import main as score_main

        return score_main(rest)
    if command == "results":
        from msl_ablate.results.cli import main as results_main

        return results_main(rest)
    print(f"msl-ablate: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
