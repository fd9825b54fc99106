"""Causal LMs from transformers checkpoints, with their tokenizer and conversation template.

Checkpoints disagree on special tokens: some tokenizers add a BOS and some do not, some have
no pad token, instruct templates end a turn with their own token (``<end_of_turn>``,
``<|im_end|>``, ``<|end|>``) rather than EOS. ``prepare_tokenizer`` settles all of that
here, once, so that the data pipeline sees one contract:

* the chat template renders the whole sequence, BOS included when the checkpoint's tokenizer
  would add one (the data pipeline tokenizes with ``add_special_tokens=False``);
* ``<image>`` is a special token and there is a pad token;
* ``padding_side`` is ``right``; our collator pads by itself (right for training, left for
  generation), so this only matters for code that calls the tokenizer with ``padding=True``;
* the template masks turn by turn (checked on a probe conversation at build time).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn
from transformers import AddedToken, AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from msl_ablate.config.checks import gguf_problem
from msl_ablate.config.enums import ChatTemplate, Tuning
from msl_ablate.data.conversation import tokenize_conversation
from msl_ablate.data.tokens import IGNORE_INDEX, IMAGE_TOKEN
from msl_ablate.models.activations import fuse_activation
from msl_ablate.models.chat_templates import BOS_PREFIX, PLAIN_TEMPLATE
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

PADDING_SIDE = "right"
# A two-turn conversation rendered at build time: the template must mask it turn by turn.
PROBE_ANSWERS = ("A red circle.", "Two.")
PROBE_MESSAGES = [
    {"role": "user", "content": f"{IMAGE_TOKEN}\nWhat is it?"},
    {"role": "assistant", "content": PROBE_ANSWERS[0]},
    {"role": "user", "content": "How many?"},
    {"role": "assistant", "content": PROBE_ANSWERS[1]},
]


class CausalLM(nn.Module):
    """A transformers causal LM with its tokenizer and the image placeholder token.

    Args:
        model: The ``*ForCausalLM`` model.
        tokenizer: Its tokenizer, prepared by ``prepare_tokenizer``.
        lora_target_modules: Module names LoRA adapts in this family (None: all linear layers).
        stop_token_ids: Ids that end an answer (EOS and the template's end-of-turn token).
        name: The option name, for messages.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        lora_target_modules: list[str] | None = None,
        stop_token_ids: list[int] | None = None,
        name: str = "lm",
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.lora_target_modules = lora_target_modules
        self.name = name
        self.image_token_id: int = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self._stop_token_ids = stop_token_ids or [tokenizer.eos_token_id]

    @property
    def embed_dim(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)  # (B, L) -> (B, L, D_lm)

    @property
    def stop_token_ids(self) -> list[int]:
        return list(self._stop_token_ids)


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer(text)`` starts with BOS by default (Llama, Gemma; not Phi, Qwen)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return (
        bool(ids)
        and ids[0] == bos
        and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]
    )


def _turn_end_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token the template puts right after an assistant answer, if any."""
    answer = PROBE_ANSWERS[0]
    text = tokenizer.apply_chat_template(PROBE_MESSAGES[:2], tokenize=False)
    suffix = text[text.rindex(answer) + len(answer) :]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    return ids[0] if ids and ids[0] in special else None


def _check_masking(tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """Tokenize the probe conversation as training does; the labels must hold both answers."""
    try:
        sample = tokenize_conversation(tokenizer, PROBE_MESSAGES, num_image_tokens=1)
    except ValueError as err:
        raise ValueError(
            f"the chat template cannot be masked turn by turn ({err}); set "
            f"lm.chat_template=plain ({where})"
        ) from err
    targets = tokenizer.decode([t for t in sample.labels if t != IGNORE_INDEX])
    if sample.num_images != 1 or not all(a in targets for a in PROBE_ANSWERS):
        raise ValueError(
            f"the chat template lost the image token or an answer on a probe conversation "
            f"(images={sample.num_images}, target text={targets!r}); set lm.chat_template=plain "
            f"({where})"
        )


def prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, chat_template: ChatTemplate | str, where: str
) -> PreTrainedTokenizerBase:
    """Give a checkpoint's tokenizer the contract the data pipeline relies on (module docstring).

    Args:
        tokenizer: The checkpoint's tokenizer (modified in place).
        chat_template: ``plain`` replaces the template; ``checkpoint`` keeps it.
        where: The option file, for messages.

    Returns:
        The same tokenizer.

    Raises:
        ValueError: ``checkpoint`` but the tokenizer has no template, or the template cannot
            be masked turn by turn.
    """
    if ChatTemplate(chat_template) is ChatTemplate.plain:
        tokenizer.chat_template = PLAIN_TEMPLATE
    elif not isinstance(tokenizer.chat_template, str) or not tokenizer.chat_template:
        raise ValueError(
            f"lm.chat_template=checkpoint but the tokenizer has no single chat template "
            f"(got {type(tokenizer.chat_template).__name__}); set lm.chat_template=plain ({where})"
        )
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        # add_tokens keeps the tokenizer's own extra special tokens (add_special_tokens
        # would replace their list); the embeddings are resized after the model loads.
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], True)
    if tokenizer.pad_token is None:
        # Safe: the collator builds attention masks and labels from lengths, not from pad ids.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = PADDING_SIDE
    first_turn = tokenizer.apply_chat_template(PROBE_MESSAGES[:1], tokenize=False)
    if _adds_bos(tokenizer) and not first_turn.startswith(tokenizer.bos_token):
        # Pretraining saw BOS first; our pipeline adds no special tokens, so the template must.
        tokenizer.chat_template = BOS_PREFIX + tokenizer.chat_template
    _check_masking(tokenizer, where)
    return tokenizer


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: nn.Module) -> list[int]:
    """EOS, the generation config's EOS ids and the template's end-of-turn token, in order."""
    ids = [tokenizer.eos_token_id]
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += gen_eos if isinstance(gen_eos, list) else [gen_eos]
    ids.append(_turn_end_id(tokenizer))
    return list(dict.fromkeys(i for i in ids if i is not None))


def load_tokenizer(
    checkpoint: str, chat_template: ChatTemplate | str, where: str, gguf_file: str | None = None
) -> PreTrainedTokenizerBase:
    """An LM checkpoint's tokenizer, prepared as the data pipeline needs it (``prepare_tokenizer``).

    Raises:
        ValueError: A ``gguf_file`` that cannot load, or a template that does not fit.
    """
    if gguf_file is not None:
        problem = gguf_problem(checkpoint, gguf_file)
        if problem is not None:
            raise ValueError(f"{problem} ({where})")
    return prepare_tokenizer(
        AutoTokenizer.from_pretrained(checkpoint, gguf_file=gguf_file), chat_template, where
    )


def build_causal_lm(
    name: str,
    checkpoint: str,
    model_class: str,
    family: str,
    params_b: float,
    tuning: Tuning | str = Tuning.base,
    chat_template: ChatTemplate | str = ChatTemplate.checkpoint,
    torch_dtype: str = "float32",
    lora_target_modules: list[str] | None = None,
    load_in_4bit: bool = False,
    gguf_file: str | None = None,
    attn_implementation: str | None = None,
) -> CausalLM:
    """Load an LM and its tokenizer from a hub id or folder, ready for image tokens.

    Args:
        name: The option name (for logs and messages).
        checkpoint: Hub id or local folder.
        model_class: Dotted transformers class, e.g. ``transformers.GemmaForCausalLM``.
        family: Model family (``phi``, ``gemma``, ...), recorded for tables.
        params_b: Size in billions of parameters of the real checkpoint, recorded for tables.
        tuning: base / sft / rlhf / dpo / safe_rlhf, recorded for tables.
        chat_template: ``checkpoint`` to use the tokenizer's template, ``plain`` for base LMs.
        torch_dtype: Weights dtype (``float32``, ``bfloat16``, ``float16``).
        lora_target_modules: LoRA targets for this family, None for every linear layer.
        load_in_4bit: Quantize the weights to 4-bit NF4 (QLoRA; needs CUDA and bitsandbytes).
        gguf_file: A GGUF file inside ``checkpoint`` to load the tokenizer and weights from
            (dequantized to ``torch_dtype``; needs the ``gguf`` package); None: the checkpoint's
            own files.
        attn_implementation: transformers' attention kernel (``sdpa``, ``eager``,
            ``flash_attention_2`` with the flash-attn package); None: transformers' default
            (SDPA, which picks a flash kernel on GPUs that have one).

    Returns:
        The wrapped LM.

    Raises:
        ValueError: A bad dtype, a template that does not fit (see ``prepare_tokenizer``), or
            a ``gguf_file`` that cannot load (``config.checks.gguf_problem``).
    """
    where = f"conf/lm/{name}.yaml"
    source = checkpoint if gguf_file is None else f"{checkpoint} (gguf_file {gguf_file})"
    log.info(
        "Loading LM %s from %s (%s, tuning=%s)", name, source, model_class, Tuning(tuning).value
    )
    dtype = getattr(torch, torch_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"lm.torch_dtype={torch_dtype!r} is not a torch dtype; use float32, bfloat16 or "
            f"float16 ({where})"
        )
    kwargs: dict[str, Any] = {}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = load_tokenizer(checkpoint, chat_template, where, gguf_file)
    if load_in_4bit:
        if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError(
                f"lm {name}: a stage with lm.mode=qlora loads the LM in 4 bits, which needs a CUDA "
                "GPU and the bitsandbytes package; use lm.mode=lora on this machine"
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    config = AutoConfig.from_pretrained(checkpoint, gguf_file=gguf_file)
    fuse_activation(config)
    model = get_class(model_class).from_pretrained(checkpoint, config=config, dtype=dtype, **kwargs)
    # Some checkpoints have spare embedding rows (Phi-2, Qwen); resize only when needed.
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    stops = stop_token_ids(tokenizer, model)
    return CausalLM(model, tokenizer, lora_target_modules, stops, name)
