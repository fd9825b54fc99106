"""Turn a LLaVA conversation into token ids and labels, with loss on every assistant turn.

The conversation is rendered with the LM's chat template one turn at a time; the text each
turn adds is tokenized on its own, so the label mask lines up with the tokens exactly, for
any template and any number of turns. The same function builds evaluation prompts, so
training and generation see identical token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from msl_ablate.models.lm import IMAGE_TOKEN

IGNORE_INDEX = -100
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


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    num_image_tokens: int,
    for_generation: bool = False,
) -> TokenizedSample:
    """Tokenize a conversation, expanding each ``<image>`` into ``num_image_tokens`` ids.

    Args:
        tokenizer: The LM's tokenizer (chat template set, ``<image>`` a special token).
        messages: ``[{"role", "content"}]``.
        num_image_tokens: Image tokens per image (from the encoder and resolution).
        for_generation: Drop the last assistant turn and end with the generation prompt.

    Returns:
        The tokenized sample.
    """
    if for_generation and messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""

    def add(text_upto: str, is_target: bool) -> None:
        nonlocal rendered
        if not text_upto.startswith(rendered):
            raise ValueError("chat template is not prefix-stable; cannot mask turn by turn")
        piece = text_upto[len(rendered) :]
        rendered = text_upto
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if is_target else [IGNORE_INDEX] * len(ids))

    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            add(_render(tokenizer, messages[:k], add_generation_prompt=True), is_target=False)
            add(_render(tokenizer, messages[: k + 1], add_generation_prompt=False), is_target=True)
        else:
            add(_render(tokenizer, messages[: k + 1], add_generation_prompt=False), is_target=False)
    if for_generation:
        add(_render(tokenizer, messages, add_generation_prompt=True), is_target=False)
    num_images = input_ids.count(image_id)
    expanded_ids, expanded_labels = [], []
    for tok, lab in zip(input_ids, labels, strict=True):
        if tok == image_id:
            expanded_ids += [image_id] * num_image_tokens
            expanded_labels += [IGNORE_INDEX] * num_image_tokens
        else:
            expanded_ids.append(tok)
            expanded_labels.append(lab)
    return TokenizedSample(expanded_ids, expanded_labels, num_images)
