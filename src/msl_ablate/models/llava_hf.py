"""The llava-hf layout: a harness model as transformers' ``LlavaForConditionalGeneration`` with
its ``LlavaProcessor`` (image processor, tokenizer, chat template), the folder lmms-eval's
``llava_hf`` loads (and VLMEvalKit's and vLLM's LLaVA support read).

The weights map one to one (``llava_reference.parameter_names``); LoRA adapters are merged into
the LM first. What the processor does must be what the harness does: the image processor is
transformers' PIL backend set to the harness's resize, mean and std, and the processor's chat
template turns llava-hf's content lists (``{"type": "image"}``, ``{"type": "text"}``) into the
harness's ``<image>\\n<text>`` before the LM's own template renders them. Whether all of that
holds is not argued here but measured: ``evaluation.export_parity`` compares the saved folder
with the harness on probe images.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import GenerationConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.image_utils import PILImageResampling
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from msl_ablate.config.enums import ResizeStrategy
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.models.activations import checkpoint_activation
from msl_ablate.models.chat_templates import BOS_PREFIX
from msl_ablate.models.llava_reference import llava_reference, reference_problem
from msl_ablate.models.vision.hf import HFVisionEncoder
from msl_ablate.models.vlm import VisionLanguageModel, merge_lora

# Rewrites llava-hf's content lists into the strings the LM's template (appended) renders:
# an image item becomes "<image>\n" where it stands, as LLaVA's prompts put it.
CONTENT_LIST_TEMPLATE = (
    "{%- set ns = namespace(messages=[]) -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set ns.messages = ns.messages + [message] -%}"
    "{%- else -%}"
    "{%- set text = namespace(value='') -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{%- set text.value = text.value + '" + IMAGE_TOKEN + "\\n' -%}"
    "{%- elif item['type'] == 'text' -%}{%- set text.value = text.value + item['text'] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set ns.messages = ns.messages + [{'role': message['role'], 'content': text.value}] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = ns.messages -%}"
)

# The other way, for released llava-hf processors whose templates read content lists only:
# "<image>\n<text>" strings become [{"type": "image"}, {"type": "text", "text": "<text>"}].
STRING_CONTENT_TEMPLATE = (
    "{%- set ns = namespace(messages=[]) -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set items = namespace(list=[]) -%}"
    "{%- for part in message['content'].split('" + IMAGE_TOKEN + "') -%}"
    "{%- if not loop.first -%}{%- set items.list = items.list + [{'type': 'image'}] -%}"
    "{%- set part = part[1:] if part.startswith('\\n') else part -%}{%- endif -%}"
    "{%- if part -%}{%- set items.list = items.list + [{'type': 'text', 'text': part}] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set ns.messages = ns.messages + [{'role': message['role'], 'content': items.list}] -%}"
    "{%- else -%}{%- set ns.messages = ns.messages + [message] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = ns.messages -%}"
)


def string_content_template(template: str) -> str:
    """A content-list template (a llava-hf processor's) that also renders string contents."""
    if template.startswith(CONTENT_LIST_TEMPLATE):  # an export of ours: strings already work
        return template
    return STRING_CONTENT_TEMPLATE + template


def export_problem(vlm: VisionLanguageModel) -> str | None:
    """Why ``vlm`` cannot be saved in the llava-hf layout, or None when it can."""
    problem = reference_problem(vlm)
    if problem is not None:
        return problem
    head = vlm.lm.model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        return (
            f"the LM head of {vlm.lm.name} has a bias (Phi's does) and LlavaForConditionalGeneration's "
            "head has none: every logit would change (--format mipha writes Mipha's layout)"
        )
    if vlm.vision.image_transform.resize is ResizeStrategy.center_crop:
        return "vision.resize=center_crop rounds sizes differently from transformers' processors"
    return None


def llava_hf_model(
    vlm: VisionLanguageModel, full_tower: nn.Module
) -> LlavaForConditionalGeneration:
    """``vlm`` as a ``LlavaForConditionalGeneration`` (LoRA merged into ``vlm`` first).

    Args:
        vlm: The trained model; its LM is replaced by the merged one.
        full_tower: The tower loaded whole from ``vlm.vision``'s checkpoint.

    Raises:
        ValueError: ``export_problem`` names a difference.
    """
    problem = export_problem(vlm)
    if problem is not None:
        raise ValueError(f"cannot export to the llava-hf layout: {problem}")
    merge_lora(vlm)
    model = llava_reference(vlm, full_tower)
    text = model.config.text_config
    if hasattr(text, "hidden_act"):
        text.hidden_act = checkpoint_activation(text.hidden_act)
    model.requires_grad_(False)
    tokenizer = vlm.lm.tokenizer
    model.generation_config = GenerationConfig(
        eos_token_id=vlm.lm.stop_token_ids, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, do_sample=False,
    )  # fmt: skip
    return model


def llava_hf_processor(vlm: VisionLanguageModel) -> LlavaProcessor:
    """The processor that prepares inputs as the harness does: same pixels, same tokens."""
    vision: HFVisionEncoder = vlm.vision
    transform = vision.image_transform
    size = vision.image_size
    images = LlavaImageProcessorPil(
        do_resize=True, size={"height": size, "width": size}, resample=PILImageResampling.BICUBIC,
        do_center_crop=False, do_pad=transform.resize is ResizeStrategy.letterbox,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=transform.mean.flatten().tolist(), image_std=transform.std.flatten().tolist(),
        do_convert_rgb=True,
    )  # fmt: skip
    tokenizer = vlm.lm.tokenizer
    template = tokenizer.chat_template
    adds_bos = tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    if template.startswith(BOS_PREFIX) and adds_bos:
        # The harness renders BOS (it tokenizes without special tokens); tools that pass the
        # rendered prompt to the processor tokenize with them: the tokenizer adds it there.
        template = template.removeprefix(BOS_PREFIX)
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=vision.model.config.patch_size,
        vision_feature_select_strategy="default" if vision.drop_cls else "full",
        chat_template=CONTENT_LIST_TEMPLATE + template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=vision.num_prefix_tokens,
    )


def save_llava_hf(vlm: VisionLanguageModel, full_tower: nn.Module, out_dir: Path) -> Path:
    """Write ``vlm`` in the llava-hf layout (model, processor, generation config) to ``out_dir``."""
    llava_hf_model(vlm, full_tower).save_pretrained(out_dir)
    processor = llava_hf_processor(vlm)
    processor.save_pretrained(out_dir)
    # Also on its own (preprocessor_config.json), where loaders older than transformers 5 look.
    processor.image_processor.save_pretrained(out_dir)
    return out_dir
