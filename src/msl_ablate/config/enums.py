"""The closed sets of values in the config: imported by the schemas and by the code that acts on them.

Kept here, free of torch, so that composing and checking a config imports nothing heavy.
"""

from __future__ import annotations

from enum import Enum

COMPONENTS = ("vision", "projector", "lm")


class Mode(str, Enum):
    """How a component is trained in a stage."""

    frozen = "frozen"
    full = "full"
    partial = "partial"  # vision only: the last `trainable_blocks` blocks
    lora = "lora"  # LM only: PEFT LoRA adapters
    qlora = "qlora"  # LM only: LoRA on a 4-bit base (bitsandbytes + CUDA)


LORA_MODES = (Mode.lora, Mode.qlora)


class Tuning(str, Enum):
    """How the LM checkpoint was tuned after pretraining (the paper's base vs instruct axis).

    Checkpoints tuned in several steps are labelled by their last preference step
    (SFT then DPO is ``dpo``); each ``conf/lm/*.yaml`` comments its choice.
    """

    base = "base"
    sft = "sft"
    rlhf = "rlhf"
    dpo = "dpo"
    safe_rlhf = "safe_rlhf"


class ChatTemplate(str, Enum):
    """Where the conversation template comes from."""

    checkpoint = "checkpoint"  # the tokenizer's own chat template (instruct LMs)
    plain = "plain"  # msl_ablate's plain USER/ASSISTANT template (base LMs)


class ResizeStrategy(str, Enum):
    """How a non-square image becomes a square one."""

    resize = "resize"  # squash to the target size (aspect ratio not kept)
    letterbox = "letterbox"  # pad to square with the mean colour, as LLaVA-1.5 does
    center_crop = "center_crop"  # shorter side to size, then crop the centre


class QuestionFormat(str, Enum):
    """The layout of a benchmark's question file."""

    questions = "questions"  # LLaVA eval questions: JSON lines {question_id, image, text}
    conversations = "conversations"  # LLaVA training records: a JSON list with conversations
    # MMBench's released TSV: index, hint, question, options A-D, answer, base64 image
    mmbench_tsv = "mmbench_tsv"


def uses_qlora(strategy) -> bool:
    """Whether any stage trains the LM with QLoRA, i.e. the LM must be loaded in 4 bits."""
    return any(Mode(s.lm.mode) is Mode.qlora for s in strategy.stages.values())


# Layouts of released checkpoints `msl-ablate import` reads (models/released.py).
RELEASE_LAYOUTS = ("llava-hf", "mipha")
