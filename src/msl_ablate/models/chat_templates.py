"""Conversation templates that do not come from a checkpoint."""

from __future__ import annotations

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
