"""``build_vlm``: the only code that knows about the vision, projector and LM groups together."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.models.zoo import resolve_checkpoint
from msl_ablate.training.strategy import uses_qlora
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def _component_kwargs(spec: DictConfig, checkpoint: str) -> dict:
    """The builder's arguments: the option's keys minus the twin, with the resolved checkpoint."""
    kwargs = OmegaConf.to_container(spec, resolve=True)
    kwargs.pop("twin", None)
    kwargs["checkpoint"] = checkpoint
    return kwargs


def resolved_checkpoints(cfg: DictConfig) -> dict[str, str]:
    """Resolve (building twins if needed) the vision and LM checkpoints of a config."""
    return {
        group: resolve_checkpoint(cfg[group], cfg.offline_twins, cfg.paths.zoo_dir)
        for group in ("vision", "lm")
    }


def build_vlm(cfg: DictConfig) -> VisionLanguageModel:
    """Build the encoder and LM, then a projector sized from them.

    Args:
        cfg: The composed root config.

    Returns:
        The vision-language model (all parameters trainable; ``strategy`` decides later).
    """
    checkpoints = resolved_checkpoints(cfg)
    log.info("Instantiating vision <%s>", cfg.vision._target_)
    vision = instantiate(_component_kwargs(cfg.vision, checkpoints["vision"]))
    log.info("Instantiating lm <%s>", cfg.lm._target_)
    # QLoRA needs the base weights quantized at load time, not later by the strategy.
    lm = instantiate(
        _component_kwargs(cfg.lm, checkpoints["lm"]), load_in_4bit=uses_qlora(cfg.strategy)
    )
    log.info(
        "Instantiating projector <%s> (%d -> %d)",
        cfg.projector._target_,
        vision.embed_dim,
        lm.embed_dim,
    )
    projector = instantiate(cfg.projector)(in_dim=vision.embed_dim, out_dim=lm.embed_dim)
    return VisionLanguageModel(vision, projector, lm)
