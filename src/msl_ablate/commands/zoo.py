"""``msl-ablate zoo build|list [--only a,b] [--sweep S ...] [overrides]``: pretrain the tiny zoo,
show its cards.

``build`` pretrains every recipe of ``conf/zoo`` (or those named, or those the jobs of the named
sweeps of ``sweeps/`` stand in for: ``make fig2`` builds only what Figure 2 needs) that is not
built yet into
``paths.zoo_dir``, the folder ``offline_twins=true`` loads from; ``list`` prints each member's
card: steps, build time, loss and its scores against a random init of the same shape.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from msl_ablate.config.compose import compose
from msl_ablate.utils.errors import ConfigError
from msl_ablate.utils.logging import setup_console_logging


def _table(rows: list[dict]) -> str:
    with pd.option_context("display.max_colwidth", 120, "display.width", 250):
        return pd.DataFrame(rows).fillna("").to_string(index=False)


def sweep_members(sweeps: list[str], overrides: list[str]) -> list[str]:
    """The zoo members that the jobs of these sweeps (of ``sweeps/``) stand in for."""
    from msl_ablate.config.components import zoo_members
    from msl_ablate.config.compose import sweep_jobs, sweeps_dir

    folder = str(sweeps_dir())
    names: list[str] = []
    for sweep in sweeps:
        for job in sweep_jobs(overrides, sweep, folder):
            cfg = compose(job, sweep, folder)
            names += [n for part in ("vision", "lm")
                      for n in zoo_members(cfg[part], part, cfg.offline_twins)]  # fmt: skip
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    """Build the zoo's members or list them with their cards."""
    parser = argparse.ArgumentParser(prog="msl-ablate zoo", description=main.__doc__)
    parser.add_argument("action", choices=["build", "list"])
    parser.add_argument("--only", default="", help="comma-separated recipe names (default: all)")
    parser.add_argument("--sweep", action="append", default=[],
                        help="only the members the jobs of this sweep of sweeps/ use (repeatable)")  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*", help="config overrides (paths.cache_dir=..., zoo.max_steps=...)"
    )
    args = parser.parse_intermixed_args(argv)
    setup_console_logging()
    try:
        cfg = compose(args.overrides)
    except ConfigError as err:
        print(f"msl-ablate zoo: {err}", file=sys.stderr)
        return 2
    from msl_ablate.pretrain import members as zoo

    # No num_threads here: every build runs on models.zoo.BUILD_THREADS, so members are the same.
    only = [n for n in args.only.split(",") if n] or None
    if args.sweep:
        try:
            only = [*(only or []), *sweep_members(args.sweep, args.overrides)]
        except ConfigError as err:
            print(f"msl-ablate zoo: {err}", file=sys.stderr)
            return 2
        if not only:  # real checkpoints (e.g. preset=paper): no twin stands in
            print(f"zoo: the jobs of {', '.join(args.sweep)} use no zoo member")
            return 0
    zoo_dir, max_steps = cfg.paths.zoo_dir, cfg.zoo.max_steps
    try:
        chosen = zoo.members(only)
    except ValueError as err:
        print(f"msl-ablate zoo: {err}", file=sys.stderr)
        return 2
    if args.action == "build":
        for k, member in enumerate(chosen, 1):
            print(f"[{k}/{len(chosen)}] {member.kind} {member.name}", flush=True)
            zoo.build_member(member, zoo_dir, max_steps)
    print(f"zoo: {zoo.member_dir(chosen[0], zoo_dir, max_steps).parent}")
    print(_table(zoo.zoo_table(only, zoo_dir, max_steps)))
    return 0
