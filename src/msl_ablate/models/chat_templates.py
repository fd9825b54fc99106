"""Conversation templates that do not come from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

# For base (not instruct-tuned) LMs: a neutral plain-text dialogue, ended by EOS. Each
# assistant answer ends with EOS, so the model learns to stop, and EOS is the stop token.
# The generation prompt ends at "ASSISTANT:" and the answer brings its own leading space, so
# BPE tokenizes the prompt identically in training and in generation (as LLaVA's v1 template).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}USER: {{ m['content'] }}\n"
    "{% else %}ASSISTANT: {{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Mipha's and LLaVA-Phi's evaluation template (conv_phi_v0 in zhuyiche/llava-phi's
# conversation.py): the system line, then "USER: <q> ASSISTANT: <a><|endoftext|>" turns, a space
# after each question and EOS after each answer.
MIPHA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions."
)
MIPHA_PHI_TEMPLATE = (
    "{{ '" + MIPHA_SYSTEM.replace("'", "\\'") + " ' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}ASSISTANT: {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Put before a template when the tokenizer adds BOS by default but the template does not
# (Llama, Gemma base): the data pipeline tokenizes with add_special_tokens=False.
BOS_PREFIX = "{{ bos_token }}"

# The chat template of the tiny zoo's tokenizer (an instruct-style template with role tokens).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>\n{{ m['content'] }}<|end|>\n"
    "{% elif m['role'] == 'assistant' %}<|assistant|>\n{{ m['content'] }}<|end|>\n"
    "{% else %}<|system|>\n{{ m['content'] }}<|end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class ChatStyle:
    """A chat template that the zoo's instruct variants are tuned in, as a real family's is.

    Attributes:
        template: The Jinja chat template.
        eos_token: The token that ends an assistant turn; the variant's EOS, so generation stops.
        special_tokens: Tokens it needs beyond the zoo tokenizer's (added to the variant's copy).
    """

    template: str
    eos_token: str
    special_tokens: tuple[str, ...] = ()


# Zephyr (TinyLlama-chat, StableLM-2-Zephyr): role tokens, every turn ended by EOS (</s>).
ZEPHYR_STYLE = ChatStyle(
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
    "</s>",
    ("</s>",),
)
# ChatML (Qwen1.5-chat, Qwen2-instruct, SmolLM2-instruct, StableLM-2-chat): <|im_start|>role
# ... <|im_end|>, <|im_end|> is EOS.
CHATML_STYLE = ChatStyle(
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "<|im_end|>",
    ("<|im_start|>", "<|im_end|>"),
)
# PKU Beaver (the Safe-RLHF models): plain-text roles after a fixed opening; answers end with
# EOS. The generation prompt ends at "ASSISTANT:" and the answer brings its leading space.
BEAVER_STYLE = ChatStyle(
    "BEGINNING OF CONVERSATION:{% for m in messages %}"
    "{% if m['role'] == 'assistant' %} ASSISTANT: {{ m['content'] }}{{ eos_token }}"
    "{% else %} {{ m['role'] | upper }}: {{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}",
    "</s>",
    ("</s>",),
)
# Gemma-it: <start_of_turn>user|model ... <end_of_turn>; <end_of_turn> is the stop token.
GEMMA_STYLE = ChatStyle(
    "{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    "<end_of_turn>",
    ("<start_of_turn>", "<end_of_turn>"),
)
# Phi-3-instruct: Zephyr's layout with <|end|> closing every turn (<|user|>\n ... <|end|>\n
# <|assistant|>\n ... <|end|>); <|end|> is the variant's EOS. These are the zoo tokenizer's own
# template and tokens (TINY_CHAT_TEMPLATE, already in its vocabulary: restyle adds none here);
# they are listed for a tokenizer without them. The real template also appends EOS after the
# last turn only; here EOS is <|end|>, so that would be a doubled <|end|>, and it is left out.
PHI3_STYLE = ChatStyle(
    ZEPHYR_STYLE.template, "<|end|>", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
)
# The styles a zoo recipe may name (`chat_style:` in conf/zoo/lm/*.yaml).
CHAT_STYLES = {"zephyr": ZEPHYR_STYLE, "chatml": CHATML_STYLE, "beaver": BEAVER_STYLE,
               "gemma": GEMMA_STYLE, "phi3": PHI3_STYLE}  # fmt: skip
