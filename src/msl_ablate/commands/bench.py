"""``msl-ablate bench [--steps N] [--stages a,b] [--lengths equal,variable] [overrides]``, and
``msl-ablate bench --shape NAME [--stages s] [--batch-size B] [--layers K] [overrides]``.

Times the harness's training step against the plain transformers loop on the same model, data,
batch and device, interleaved in one process (``experiment/bench.py``), and prints samples/s,
tokens/s, the ratio to the loop, padding and (CUDA) peak memory per stage and kind of lengths.
Overrides compose the model as for ``train`` (default ``preset=demo``). Writes ``bench.md`` and
``bench.json`` to ``--out`` (default ``results/bench``). Nothing is kept in MLflow or the stages.

With ``--shape``, one stage's step (default ``finetune``) on a real-sized model with random
weights (``conf/shape/<name>.yaml``, ``experiment/shaped.py``): step time, tokens/s, FLOPs and,
on a GPU, MFU and peak memory; written to ``shape-<name>.md`` and ``.json``. Use
``trainer=gpu`` on a GPU (bf16-mixed); ``--layers`` shrinks both parts to try it elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.checks import check
from msl_ablate.utils.errors import ConfigError, DataError

EXIT_BAD_INPUT = 2


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def main(argv: list[str] | None = None) -> int:
    """Time the harness against the plain transformers loop."""
    parser = argparse.ArgumentParser(prog="msl-ablate bench", description=main.__doc__)
    parser.add_argument(
        "--steps", type=int, default=60, help="timed steps per contender and setting"
    )
    parser.add_argument("--block", type=int, default=5, help="steps per alternating block")
    parser.add_argument("--stages", type=_names, default=None, help="stages (default: all)")
    parser.add_argument("--lengths", type=_names, default=["equal", "variable"],
                        help="equal: the most common length only; variable: the split as it is")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--shape", default=None,
                        help="a step of conf/shape/<SHAPE>.yaml, random weights")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None,
                        help="--shape: samples per step (default: the stage's)")  # fmt: skip
    parser.add_argument("--layers", type=int, default=None,
                        help="--shape: depth of tower and LM (default: the shape's)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=3, help="--shape: untimed first steps")
    parser.add_argument("overrides", nargs="*", help="config overrides (default preset=demo)")
    args = parser.parse_intermixed_args(argv)
    from msl_ablate.experiment.bench import LENGTHS

    problems = [f"--lengths {k!r} is not one of {', '.join(LENGTHS)}"
                for k in args.lengths if k not in LENGTHS]  # fmt: skip
    if args.steps < 1 or args.block < 1:
        problems.append("--steps and --block must be at least 1")
    overrides = args.overrides or ["preset=demo"]
    try:
        cfg = compose(overrides)
        absolutize_paths(cfg)
        check(cfg)
    except ConfigError as err:
        problems.append(str(err))
    else:
        stages = args.stages or list(cfg.strategy.stages)
        problems += [f"--stages: no stage {s!r} in strategy={cfg.strategy.name} "
                     f"(it has {', '.join(cfg.strategy.stages)})"
                     for s in stages if s not in cfg.strategy.stages]  # fmt: skip
    if args.shape and not problems and len(args.stages or ["finetune"]) != 1:
        problems.append("--shape times one stage: give --stages NAME")
    if args.shape and not problems and "finetune" not in cfg.strategy.stages and not args.stages:
        problems.append(f"--shape: strategy={cfg.strategy.name} has no finetune stage; "
                        "give --stages NAME")  # fmt: skip
    if problems:
        print("msl-ablate bench: " + "; ".join(problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.shape:
        return _shaped(cfg, args)
    from msl_ablate.experiment.bench import run_bench

    try:
        run_bench(cfg, stages, args.lengths, args.steps, args.block, args.out)
    except (ValueError, DataError) as err:
        print(f"msl-ablate bench: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print((args.out / "bench.md").read_text(encoding="utf-8"))
    print(f"written: {args.out / 'bench.md'}, {args.out / 'bench.json'}")
    return 0


def _shaped(cfg, args: argparse.Namespace) -> int:
    """``--shape``: one stage's step on a real-sized model with random weights."""
    import json

    from msl_ablate.experiment.shaped import markdown, run_shaped

    stage = (args.stages or ["finetune"])[0]
    try:
        result = run_shaped(cfg, args.shape, stage, args.steps, args.warmup, args.batch_size,
                            args.layers)  # fmt: skip
    except ValueError as err:
        print(f"msl-ablate bench: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"shape-{args.shape}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    print(f"written: {stem}.md, {stem}.json")
    return 0
