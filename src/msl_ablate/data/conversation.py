"""Turn a LLaVA conversation into token ids and labels, with loss on every assistant turn.

The whole conversation is rendered once with the LM's chat template and tokenized once, as the
model will see it. Each assistant turn's character span is found by rendering the conversation
up to that turn and taking the longest common prefix with the full text (and with the same
turn followed by another one); this works for templates that are not prefix-stable (Phi-3
appends EOS only after the last turn). A token is a
target if it ends inside an answer span (a leading space merged into the first word counts),
so a special token cut by the span's end is never labelled. Evaluation prompts go through the same function, so training and
generation see identical token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from msl_ablate.data.tokens import IGNORE_INDEX, IMAGE_TOKEN

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass
class TokenizedSample:
    """Token ids and labels of one sample; ``labels`` is -100 outside assistant answers."""

    input_ids: list[int]
    labels: list[int]
    num_images: int


def to_messages(conversations: list[dict], record_id: str = "?") -> list[dict[str, str]]:
    """Convert LLaVA ``{"from", "value"}`` turns into chat-template messages.

    Raises:
        ValueError: An unknown speaker or a turn without text, naming the record.
    """
    messages = []
    for i, turn in enumerate(conversations):
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in ROLES or not isinstance(value, str):
            raise ValueError(
                f"record {record_id}: turn {i} must be {{'from': one of {sorted(ROLES)}, 'value': str}}, got {turn!r}"
            )
        messages.append({"role": ROLES[speaker], "content": value})
    return messages


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool
) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def answer_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], full: str
) -> list[tuple[int, int]]:
    """Character spans of the assistant turns (answer and end-of-turn marker) in ``full``.

    Raises:
        ValueError: An assistant turn has no text of its own in the rendering.
    """
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _common_prefix_len(_render(tokenizer, messages[:k], True), full)
        upto = _render(tokenizer, messages[: k + 1], False)
        # What the turn keeps when the conversation goes on: drops text a template adds only
        # after the last turn (Phi-3's EOS), which is not part of the answer.
        going_on = _render(tokenizer, [*messages[: k + 1], {"role": "user", "content": "?"}], False)
        end = min(_common_prefix_len(upto, full), _common_prefix_len(upto, going_on))
        if end <= start or message["content"] not in full[start:end]:
            raise ValueError(
                f"assistant turn {k} ({message['content']!r}) cannot be located in the rendered "
                "conversation; the chat template is not suitable for turn-by-turn masking"
            )
        spans.append((start, end))
    return spans


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    num_image_tokens: int,
    for_generation: bool = False,
) -> TokenizedSample:
    """Tokenize a conversation, expanding each ``<image>`` into ``num_image_tokens`` ids.

    Args:
        tokenizer: The LM's fast tokenizer (chat template set, ``<image>`` a special token).
        messages: ``[{"role", "content"}]``.
        num_image_tokens: Image tokens per image (from the encoder and resolution).
        for_generation: Drop the last assistant turn and end with the generation prompt.

    Returns:
        The tokenized sample.
    """
    if for_generation and messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    full = _render(tokenizer, messages, add_generation_prompt=for_generation)
    spans = [] if for_generation else answer_spans(tokenizer, messages, full)
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    input_ids: list[int] = []
    labels: list[int] = []
    num_images = 0
    for token, (_, end) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
        if token == image_id:
            num_images += 1
            input_ids += [image_id] * num_image_tokens
            labels += [IGNORE_INDEX] * num_image_tokens
            continue
        input_ids.append(token)
        labels.append(token if any(s < end <= e for s, e in spans) else IGNORE_INDEX)
    return TokenizedSample(input_ids, labels, num_images)
