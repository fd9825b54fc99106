"""The chat-template adapters between the harness's string contents and llava-hf's content lists."""

from __future__ import annotations

from transformers.utils.chat_template_utils import _compile_jinja_template

from msl_ablate.models.chat_templates import MIPHA_PHI_TEMPLATE
from msl_ablate.models.llava_hf import CONTENT_LIST_TEMPLATE, string_content_template

# llava-hf's LLaVA-1.5 processor template: content lists only, images first.
LLAVA_15_HF = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
STRINGS = [{"role": "user", "content": "<image>\nWhat is it?"},
           {"role": "assistant", "content": "A cat."}, {"role": "user", "content": "Colour?"}]  # fmt: skip
LISTS = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
    {"role": "user", "content": [{"type": "text", "text": "Colour?"}]},
]


def _render(template: str, messages: list) -> str:
    return _compile_jinja_template(template).render(
        messages=messages, add_generation_prompt=True, eos_token="<|endoftext|>"
    )


def test_a_released_content_list_template_renders_the_harness_strings():
    template = string_content_template(LLAVA_15_HF)
    expected = "USER: <image>\nWhat is it? ASSISTANT: A cat. USER: Colour? ASSISTANT:"
    assert _render(template, STRINGS) == expected == _render(template, LISTS)


def test_an_exported_template_renders_lists_as_the_lm_renders_strings():
    exported = CONTENT_LIST_TEMPLATE + MIPHA_PHI_TEMPLATE
    assert _render(exported, LISTS) == _render(MIPHA_PHI_TEMPLATE, STRINGS)
    assert _render(exported, STRINGS) == _render(MIPHA_PHI_TEMPLATE, STRINGS)
    assert string_content_template(exported) == exported  # strings work already


def test_mipha_template_is_conv_phi_v0():
    assert _render(MIPHA_PHI_TEMPLATE, STRINGS) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions. USER: <image>\n"
        "What is it? ASSISTANT: A cat.<|endoftext|>USER: Colour? ASSISTANT:"
    )
