"""``msl-ablate results [--rebuild] [overrides]``: print the results store, rebuilt from MLflow if asked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.results import store
from msl_ablate.utils.errors import ConfigError
from msl_ablate.utils.logging import setup_console_logging


def main(argv: list[str] | None = None) -> int:
    """Print the results store; with ``--rebuild`` first rebuild it from MLflow alone."""
    parser = argparse.ArgumentParser(prog="msl-ablate results", description=main.__doc__)
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild results/store.parquet (and its CSV export) from MLflow",
    )
    parser.add_argument(
        "overrides", nargs="*", help="config overrides (paths.root=..., tracking.*)"
    )
    args = parser.parse_args(argv)
    setup_console_logging()
    try:
        cfg = compose(args.overrides)
    except ConfigError as err:
        print(f"msl-ablate results: {err}", file=sys.stderr)
        return 2
    absolutize_paths(cfg)
    path = Path(cfg.paths.results_dir) / store.STORE_FILE
    if args.rebuild:
        df = store.rebuild(cfg.tracking.tracking_uri, cfg.tracking.experiment, path)
        n = df["evaluation_key"].nunique()
        print(f"rebuilt {path} from {cfg.tracking.tracking_uri} ({n} evaluations, {len(df)} rows)")
    else:
        try:
            df = store.load(path)
        except store.StoreError as err:
            print(f"msl-ablate results: {err} (rebuild it: msl-ablate results --rebuild)",
                  file=sys.stderr)  # fmt: skip
            return 2
    print(store.summary(df))
    return 0
