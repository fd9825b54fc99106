"""Causal LMs from transformers checkpoints, with their tokenizer and conversation template."""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from msl_ablate.models.chat_templates import PLAIN_TEMPLATE
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

IMAGE_TOKEN = "<image>"


class Tuning(str, Enum):
    """How the LM checkpoint was tuned after pretraining (the paper's base vs instruct axis)."""

    base = "base"
    sft = "sft"
    rlhf = "rlhf"
    dpo = "dpo"
    safe_rlhf = "safe_rlhf"


class ChatTemplate(str, Enum):
    """Where the conversation template comes from."""

    checkpoint = "checkpoint"  # the tokenizer's own chat template (instruct LMs)
    plain = "plain"  # msl_ablate's plain USER/ASSISTANT template (base LMs)


class CausalLM(nn.Module):
    """A transformers causal LM with its tokenizer and the image placeholder token.

    Args:
        model: The ``*ForCausalLM`` model.
        tokenizer: Its tokenizer, with a chat template and ``<image>`` as a special token.
        lora_target_modules: Module names LoRA adapts in this family (None: all linear layers).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        lora_target_modules: list[str] | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.lora_target_modules = lora_target_modules
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    @property
    def embed_dim(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)  # (B, L) -> (B, L, D_lm)

    @property
    def stop_token_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]


def build_causal_lm(
    name: str,
    checkpoint: str,
    family: str,
    params_b: float,
    tuning: Tuning | str = Tuning.base,
    chat_template: ChatTemplate | str = ChatTemplate.checkpoint,
    torch_dtype: str = "float32",
    lora_target_modules: list[str] | None = None,
) -> CausalLM:
    """Load an LM and its tokenizer from a hub id or folder, ready for image tokens.

    Args:
        name: The option name (for logs).
        checkpoint: Hub id or local folder.
        family: Model family (``phi``, ``gemma``, ...), recorded for tables.
        params_b: Size in billions of parameters of the real checkpoint, recorded for tables.
        tuning: base / sft / rlhf / dpo / safe_rlhf, recorded for tables.
        chat_template: ``checkpoint`` to use the tokenizer's template, ``plain`` for base LMs.
        torch_dtype: Weights dtype (``float32``, ``bfloat16``, ``float16``).
        lora_target_modules: LoRA targets for this family, None for every linear layer.

    Returns:
        The wrapped LM.

    Raises:
        ValueError: ``chat_template=checkpoint`` but the tokenizer has none.
    """
    log.info(
        "Loading LM %s from %s (family=%s, tuning=%s)",
        name,
        checkpoint,
        family,
        Tuning(tuning).value,
    )
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if ChatTemplate(chat_template) is ChatTemplate.plain:
        tokenizer.chat_template = PLAIN_TEMPLATE
    elif not tokenizer.chat_template:
        raise ValueError(
            f"lm.chat_template=checkpoint but the tokenizer of {checkpoint} has no chat template; "
            f"set lm.chat_template=plain (conf/lm/{name}.yaml)"
        )
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, torch_dtype))
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return CausalLM(model, tokenizer, lora_target_modules)
