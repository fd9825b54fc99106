"""``msl-ablate describe <overrides>``: what a config builds, before any training.

Composes and checks the config like ``train``, builds the model (real checkpoints, or their
tiny twins with ``offline_twins=true``) and prints the resolved checkpoints, the image-token
count and sequence budget (``data.max_length``, derived when null), and for each stage the
parameters trained per component.
"""

from __future__ import annotations

import sys
from typing import TextIO

from omegaconf import DictConfig

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.checks import check

USAGE = (
    "usage: msl-ablate describe [overrides]   e.g. msl-ablate describe lm=phi_2 offline_twins=true"
)
AXES = ("vision", "lm", "projector", "strategy", "data")


def _header(cfg: DictConfig) -> list[str]:
    axes = " ".join(f"{axis}={cfg[axis].name}" for axis in AXES)
    lm = cfg.lm
    return [
        f"config: {axes}" + (" (offline twins)" if cfg.offline_twins else ""),
        f"lm: family={lm.family} params_b={lm.params_b} tuning={lm.tuning.value} "
        f"chat_template={lm.chat_template.value} torch_dtype={lm.torch_dtype}",
    ]


def describe(cfg: DictConfig, out: TextIO) -> None:
    """Build the model of a checked config and write its description.

    Args:
        cfg: The composed root config.
        out: Where to write (stdout for the command).

    Raises:
        ConfigError: The config fails the checks.
        ValueError: The strategy does not fit the built model (e.g. ``trainable_blocks``), or
            the sequence budget does not (no room for text, longer than the LM's context).
    """
    from msl_ablate.models.assemble import build_vlm, max_sequence_length, resolved_checkpoints
    from msl_ablate.training.strategy import apply_stage, trainability_table

    check(cfg)
    lines = _header(cfg)
    lines.append("checkpoints:")
    lines += [f"  {where:<19} {path}" for where, path in resolved_checkpoints(cfg).items()]
    if cfg.lm.get("gguf_file") and not (cfg.offline_twins or cfg.lm.checkpoint is None):
        lines.append(f"  {'lm.gguf_file':<19} {cfg.lm.gguf_file}")
    vlm = build_vlm(cfg)
    n_image = vlm.num_image_tokens
    lines.append(f"image tokens: {n_image} per image (vision.image_size={cfg.vision.image_size})")
    out.write("\n".join(lines) + "\n")  # what was built, before a budget that does not fit
    lines = []
    length = max_sequence_length(cfg, vlm)
    derived = " (derived: data.max_length is null)" if cfg.data.max_length is None else ""
    lines.append(
        f"sequence budget: {length} = {n_image} image tokens + {length - n_image} text tokens "
        f"(one image per sample){derived}"
    )
    for name, stage in cfg.strategy.stages.items():
        apply_stage(vlm, stage)  # in order, as training does: LoRA adapters persist
        lines.append(f"stage {name} ({stage.split}, {stage.max_steps} steps):")
        lines += [f"  {row}" for row in trainability_table(vlm, stage).splitlines()]
    out.write("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    """Entry point of ``msl-ablate describe``.

    Returns:
        0 on success; 2 on a config or build error (the message goes to stderr).
    """
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        cfg = compose(argv)
        absolutize_paths(cfg)
        describe(cfg, sys.stdout)
    except (ValueError, OSError, RuntimeError) as err:
        # ConfigError is a ValueError; OSError covers checkpoints that cannot be loaded.
        print(f"msl-ablate describe: {err}", file=sys.stderr)
        return 2
    return 0
