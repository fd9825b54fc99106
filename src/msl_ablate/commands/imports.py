"""``msl-ablate import SOURCE --layout llava-hf|mipha --name NAME [overrides]``: a released
checkpoint as a finished training, to benchmark with ``msl-ablate evaluate --run <key>``.

``llava-hf``: a ``LlavaForConditionalGeneration`` folder with its processor (llava-hf's
LLaVA-1.5 conversions, or ``msl-ablate export``'s output). ``mipha``: a Mipha / LLaVA-Phi folder
(``config.json`` with ``vision_config``, one state dict with LM, projector and vision tower,
``preprocessor_config.json``). The release's rows carry ``NAME`` as their vision and LM values.
Overrides set only ``paths.*`` and ``tracking.*``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.enums import RELEASE_LAYOUTS
from msl_ablate.experiment.runs import check_overrides
from msl_ablate.utils.errors import ConfigError

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msl-ablate import``; returns the exit code (2 bad input, 3 no parity)."""
    from msl_ablate.utils.logging import setup_console_logging

    parser = argparse.ArgumentParser(prog="msl-ablate import", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="the released checkpoint's folder")
    parser.add_argument("--layout", required=True, choices=RELEASE_LAYOUTS)
    parser.add_argument("--name", required=True, help="the name its rows carry, e.g. mipha_3b")
    parser.add_argument("overrides", nargs="*", help="paths.*, tracking.*")
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exc:  # usage errors and --help: return the code instead of exiting
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    setup_console_logging()
    from msl_ablate.evaluation.export_parity import ParityError
    from msl_ablate.experiment.imports import import_release

    try:
        check_overrides(args.overrides, (), "import", "")
        result = import_release(args.source.resolve(), args.layout, args.name, args.overrides)
    except ParityError as err:
        print(f"msl-ablate import: the harness computes other logits than the release: {err}",
              file=sys.stderr)  # fmt: skip
        return EXIT_MISMATCH
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"msl-ablate import: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    key = result["training_key"]
    checked = "" if result["parity"] is None else (
        f"; its logits equal the release's own model's on {len(result['parity'])} probes "
        f"(largest difference {max(result['parity'].values()):.2g})")  # fmt: skip
    print(f"imported {args.source} ({args.layout}) as training {key} ({result['root']}){checked}")
    print(f"benchmark it: msl-ablate evaluate --run {key} [--benchmarks a,b] [benchmarks=...]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
