"""``msl-ablate export RUN OUT [--format llava-hf] [overrides]``: a finished run as a folder
other tools load.

``llava-hf`` (the default): ``LlavaForConditionalGeneration`` with its ``LlavaProcessor`` (image processor,
tokenizer, chat template), the layout lmms-eval's ``llava_hf`` loads (and VLMEvalKit's and
vLLM's LLaVA support read). The folder is written only when, loaded back as those tools load it,
it gives the harness's tokens, pixels, logits and greedy answers on fixed probes; otherwise the
export fails naming the first difference. ``mipha``: Mipha's / LLaVA-Phi's layout (zhuyiche/llava-phi),
the way out for Phi LMs (their LM head has a bias LLaVA's lacks), gated on Mipha's forward pass. ``RUN`` is a training key or an MLflow run id, as for ``evaluate``; overrides set
only ``paths.*``, ``tracking.*`` (where the run is now) and ``num_threads``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.export import EXPORT_RECORD, FORMATS, export_run
from msl_ablate.experiment.runs import check_overrides, load_run_config, locate_run
from msl_ablate.utils.errors import ConfigError

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``msl-ablate export``; returns the exit code (2 bad input, 3 no parity)."""
    from msl_ablate.evaluation.export_parity import ParityError
    from msl_ablate.utils.logging import setup_console_logging

    parser = argparse.ArgumentParser(prog="msl-ablate export", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="training key or MLflow run id")
    parser.add_argument("out", type=Path, help="folder to write (must not exist, or be empty)")
    parser.add_argument("--format", default=FORMATS[0], choices=FORMATS)
    parser.add_argument("overrides", nargs="*", help="paths.*, tracking.*, num_threads")
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exc:  # usage errors and --help: return the code instead of exiting
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    setup_console_logging()
    try:
        check_overrides(args.overrides, ("num_threads",), "export", "num_threads")
        current = compose(args.overrides)
        absolutize_paths(current)
        _, run_dir = locate_run(args.run, current)
        cfg = load_run_config(run_dir, current, args.overrides, ("num_threads",))
        record = export_run(cfg, args.out.resolve(), args.format)
    except ParityError as err:
        print(f"msl-ablate export: the exported folder differs from the harness: {err}; "
              f"nothing was written to {args.out}", file=sys.stderr)  # fmt: skip
        return EXIT_MISMATCH
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"msl-ablate export: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    parity = record["parity"]
    gap = max(p["max_logit_difference"] for p in parity["probes"].values())
    line = (f"exported training {record['training_key']} to {args.out} ({args.format}); parity "
            f"on {len(parity['probes'])} probes: largest logit difference {gap:.2g}")  # fmt: skip
    fast = parity.get("torchvision_backend")
    if fast is not None:  # llava-hf: answers compared too, and the default image backend
        line += (f", greedy answers equal; torchvision image backend: pixels within "
                 f"{fast['max_pixel_difference']:.3g}, answers equal {fast['answers_equal']}")  # fmt: skip
    print(f"{line} (report: {EXPORT_RECORD})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
