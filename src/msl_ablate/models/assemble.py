"""``build_vlm``: the only code that knows about the vision, projector and LM groups together."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from msl_ablate.config.components import VISION_SIZE_KEYS, components
from msl_ablate.config.enums import uses_qlora
from msl_ablate.models.lm import load_tokenizer
from msl_ablate.models.vision.base import VisionEncoder
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.models.zoo import builder_kwargs, resolve_checkpoint
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def resolved_checkpoints(cfg: DictConfig) -> dict[str, str]:
    """``{config key: checkpoint}`` of every component (building twins if needed)."""
    return {
        where: resolve_checkpoint(spec, cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps)
        for group in ("vision", "lm")
        for where, spec in components(cfg[group], group)
    }


def quiet_loading_bars() -> None:
    """Turn off transformers' per-tensor bars (writing twins, loading weights), keep the Hub's.

    Those bars take a line each per model, interleaved with the build's log lines; a real
    checkpoint's download bars (huggingface_hub's, minutes for a 3B LM) stay.
    """
    import huggingface_hub.utils
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()  # also turns the Hub's bars off...
    huggingface_hub.utils.enable_progress_bars()  # ...which downloads still want


def build_vision_encoder(cfg: DictConfig) -> VisionEncoder:
    """The vision encoder of ``cfg.vision`` (its twin when ``offline_twins``)."""
    return instantiate(
        builder_kwargs(
            cfg.vision, cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps, VISION_SIZE_KEYS
        )
    )


def build_tokenizer(cfg: DictConfig) -> PreTrainedTokenizerBase:
    """The tokenizer ``build_vlm`` gives its LM, without loading the LM's weights."""
    checkpoint = resolved_checkpoints(cfg)["lm"]
    real_gguf = not cfg.offline_twins and cfg.lm.checkpoint is not None
    return load_tokenizer(checkpoint, cfg.lm.chat_template, f"conf/lm/{cfg.lm.name}.yaml",
                          cfg.lm.gguf_file if real_gguf else None)  # fmt: skip


def build_vlm(cfg: DictConfig) -> VisionLanguageModel:
    """Build the encoder and LM, then a projector sized from them.

    Args:
        cfg: The composed root config.

    Returns:
        The vision-language model (all parameters trainable; ``strategy`` decides later).
    """
    quiet_loading_bars()
    log.info("Instantiating vision <%s>", cfg.vision._target_)
    vision = build_vision_encoder(cfg)
    log.info("Instantiating lm <%s>", cfg.lm._target_)
    # QLoRA needs the base weights quantized at load time, not later by the strategy.
    lm = instantiate(
        builder_kwargs(cfg.lm, cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps),
        load_in_4bit=uses_qlora(cfg.strategy),
        # A file of the real checkpoint: a twin's folder holds plain safetensors.
        gguf_file=None if cfg.offline_twins or cfg.lm.checkpoint is None else cfg.lm.gguf_file,
    )
    log.info(
        "Instantiating projector <%s> (%d -> %d)",
        cfg.projector._target_,
        vision.embed_dim,
        lm.embed_dim,
    )
    projector = instantiate(cfg.projector)(in_dim=vision.embed_dim, out_dim=lm.embed_dim)
    return VisionLanguageModel(vision, projector, lm)


def max_sequence_length(cfg: DictConfig, vlm: VisionLanguageModel) -> int:
    """The longest training sequence: ``data.max_length``, or one image's tokens + the text budget.

    Args:
        cfg: The root config (``data.max_length``, ``data.max_text_length``).
        vlm: The built model (its image tokens and the LM's context length).

    Returns:
        The length, checked against the image tokens and the LM's context.

    Raises:
        ValueError: No room is left for text, or the length exceeds the LM's context; the
            message gives the value to set.
    """
    n_image, text = vlm.num_image_tokens, cfg.data.max_text_length
    length = cfg.data.max_length if cfg.data.max_length is not None else n_image + text
    if length <= n_image:
        raise ValueError(
            f"data.max_length={length} leaves no room for text after {n_image} image tokens "
            f"(vision={cfg.vision.name}, image_size={cfg.vision.image_size}); set "
            f"data.max_length={n_image + text} or null (image tokens + data.max_text_length)"
        )
    context = getattr(vlm.lm.model.config, "max_position_embeddings", None)
    if context is not None and length > context:
        raise ValueError(
            f"data.max_length={length} ({n_image} image tokens + {length - n_image} text) "
            f"exceeds the context of lm={cfg.lm.name} ({context} tokens); set "
            f"data.max_text_length={context - n_image} or lower vision.image_size"
        )
    return length
