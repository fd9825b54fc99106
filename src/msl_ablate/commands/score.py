"""``msl-ablate score``: score an answer file with a benchmark's official metric.

Usage::

    msl-ablate score BENCHMARK --annotations PATH --predictions PATH [--split SPLIT]
                     [--questions PATH] [--output metrics.json]

Prints the metrics as JSON (indent 2, sorted keys). Bad input files give one error line on
stderr naming the file, line and id, and exit code 2. Also runnable as
``python -m msl_ablate.commands.score``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from msl_ablate.evaluation.scoring.benchmarks import SCORERS, score
from msl_ablate.evaluation.scoring.files import write_text_atomic

EXIT_BAD_INPUT = 2


def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``score`` arguments to ``parser`` (for wiring as a subcommand).

    Args:
        parser: Parser or subparser to extend.

    Returns:
        The same parser.
    """
    with_split = [n for n, f in SCORERS.items() if "split" in inspect.signature(f).parameters]
    parser.add_argument("benchmark", choices=sorted(SCORERS), help="benchmark to score")
    parser.add_argument("--annotations", type=Path, required=True, help="official annotations")
    parser.add_argument("--predictions", type=Path, required=True, help="JSON-lines answers")
    parser.add_argument(
        "--split",
        help=f"split to score (only {', '.join(sorted(with_split))}; sqa_img default: test)",
    )
    with_questions = [
        n for n, f in SCORERS.items() if "questions" in inspect.signature(f).parameters
    ]
    parser.add_argument(
        "--questions", type=Path,
        help=f"LLaVA's question file, whose ids the answer file uses (only "
        f"{', '.join(sorted(with_questions))}: e.g. llava_pope_test.jsonl)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="also write the metrics JSON here")
    return parser


def run_score(args: argparse.Namespace) -> int:
    """Score as described by parsed arguments; print (and optionally write) the metrics.

    Args:
        args: Namespace from a parser set up by :func:`add_score_arguments`.

    Returns:
        0 on success, 2 on bad input (message on stderr).
    """
    options = {k: v for k, v in (("split", args.split), ("questions", args.questions))
               if v is not None}  # fmt: skip
    try:
        metrics = score(args.benchmark, args.annotations, args.predictions, **options)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = json.dumps(metrics, indent=2, sort_keys=True)
    print(text)
    if args.output is not None:
        try:
            write_text_atomic(args.output, text + "\n")
        except OSError as err:
            print(f"error: cannot write {args.output}: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msl-ablate score``.

    Args:
        argv: Arguments after ``score`` (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = add_score_arguments(
        argparse.ArgumentParser(
            prog="msl-ablate score", description="Score answers with a benchmark's official metric."
        )
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors and --help; return instead
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return run_score(args)


if __name__ == "__main__":
    sys.exit(main())
