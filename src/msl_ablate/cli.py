"""The ``msl-ablate`` command: one subcommand per module of ``msl_ablate.commands``."""

from __future__ import annotations

import importlib
import sys

# command -> (module with `main(argv)`, what it does)
COMMANDS = {
    "train": ("msl_ablate.commands.train", "[overrides]    train and evaluate one config (Hydra; -m for sweeps)"),
    "describe": ("msl_ablate.commands.describe", "[overrides] print the composed model: parameters, image tokens, checkpoints"),
    "evaluate": ("msl_ablate.commands.evaluate", "--run RUN     benchmark a finished run (run key or MLflow id; --benchmarks a,b)"),
    "export": ("msl_ablate.commands.export", "RUN OUT       a finished run as a llava-hf folder (LlavaForConditionalGeneration), parity-gated"),
    "import": ("msl_ablate.commands.imports", "SOURCE --layout L --name N  a released checkpoint (llava-hf, Mipha) as a run to evaluate"),
    "score": ("msl_ablate.commands.score", "BENCHMARK ...    score an answer file with a benchmark's official metric"),
    "plan": ("msl_ablate.commands.plan", "SWEEP [overrides]  a sweep's stages and evaluations, what is done, how long the rest takes"),
    "status": ("msl_ablate.commands.status", "[overrides]   where each job of a sweep stands: done/running/failed/todo, stages, artifacts"),
    "zoo": ("msl_ablate.commands.zoo", "build|list [--only a,b]  pretrain the tiny zoo (conf/zoo) / print its cards"),
    "data": ("msl_ablate.commands.data", "check [--split a,b] [overrides]  read, check and tokenize every record of the data's files"),
    "cache": ("msl_ablate.commands.cache", "info|clear     the frozen vision features cached on this machine"),
    "bench": ("msl_ablate.commands.bench", "[--steps N] [overrides]  the harness's training step against the plain transformers loop"),
    "results": ("msl_ablate.commands.results", "[--rebuild]    print the results store (rebuilt from MLflow with --rebuild)"),
    "report": ("msl_ablate.commands.report", "STUDY|--all   a study's table, differences, figure and findings (sweeps/*.yaml)"),
}  # fmt: skip
USAGE = "usage: msl-ablate <command> [args]\n\ncommands:\n" + "\n".join(
    f"  {name} {text}" for name, (_, text) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``msl-ablate <command>``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] not in COMMANDS:
        print(f"msl-ablate: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
