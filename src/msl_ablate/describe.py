"""``msl-ablate describe <overrides>``: what a config builds, before any training.

Composes and checks the config like ``train``, builds the model (real checkpoints, or their
tiny twins with ``offline_twins=true``) and prints the resolved checkpoints, the image-token
count and sequence budget, and for each stage the parameters trained per component.
"""

from __future__ import annotations

import sys
from typing import TextIO

from omegaconf import DictConfig

from msl_ablate.config.checks import check_config
from msl_ablate.config.compose import compose
from msl_ablate.models.assemble import build_vlm, resolved_checkpoints
from msl_ablate.training.strategy import apply_stage, trainability_table

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
        ConfigError: The config fails ``check_config``.
        ValueError: The strategy does not fit the built model (e.g. ``trainable_blocks``).
        ValueError: Image tokens leave no room for text within ``data.max_length``.
    """
    check_config(cfg)
    lines = _header(cfg)
    lines.append("checkpoints:")
    lines += [f"  {group:<7} {path}" for group, path in resolved_checkpoints(cfg).items()]
    vlm = build_vlm(cfg)
    n_image = vlm.num_image_tokens
    budget = cfg.data.max_length - n_image
    lines.append(f"image tokens: {n_image} per image (vision.image_size={cfg.vision.image_size})")
    lines.append(
        f"sequence budget: data.max_length={cfg.data.max_length} = {n_image} image tokens "
        f"+ {budget} text tokens (one image per sample)"
    )
    for name, stage in cfg.strategy.stages.items():
        apply_stage(vlm, stage)  # in order, as training does: LoRA adapters persist
        lines.append(f"stage {name} ({stage.split}, {stage.max_steps} steps):")
        lines += [f"  {row}" for row in trainability_table(vlm, stage).splitlines()]
    out.write("\n".join(lines) + "\n")
    if budget <= 0:
        raise ValueError(
            f"data.max_length={cfg.data.max_length} leaves no room for text after {n_image} image "
            f"tokens; raise data.max_length or lower vision.image_size"
        )


def main(argv: list[str]) -> int:
    """Entry point of ``msl-ablate describe``.

    Returns:
        0 on success; 2 on a config or build error (the message goes to stderr).
    """
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        describe(compose(argv), sys.stdout)
    except (ValueError, OSError, RuntimeError) as err:
        # ConfigError is a ValueError; OSError covers checkpoints that cannot be loaded.
        print(f"msl-ablate describe: {err}", file=sys.stderr)
        return 2
    return 0
