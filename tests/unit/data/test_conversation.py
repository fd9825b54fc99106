"""Tokenization with image-token expansion and turn-by-turn label masking."""

from __future__ import annotations

import os

import pytest
from transformers import AutoTokenizer

from msl_ablate.data.conversation import IGNORE_INDEX, to_messages, tokenize_conversation
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.models.zoo import ensure_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ensure_tokenizer(os.environ["MSL_ABLATE_CACHE"] + "/zoo"))


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_single_turn_layout_is_exact(tokenizer):
    messages = [
        {"role": "user", "content": "<image>\nWhat colour is the circle?"},
        {"role": "assistant", "content": "red"},
    ]
    sample = tokenize_conversation(tokenizer, messages, num_image_tokens=4)

    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    user = ids(tokenizer, "<|user|>\n<image>\nWhat colour is the circle?<|end|>\n")
    prompt = ids(tokenizer, "<|assistant|>\n")
    answer = ids(tokenizer, "red<|end|>\n")
    # <|user|> and the newline come first, then the 4 expanded image tokens.
    assert user[:3] == [
        tokenizer.convert_tokens_to_ids("<|user|>"),
        ids(tokenizer, "\n")[0],
        image_id,
    ]
    expected_len = len(user) - 1 + 4 + len(prompt) + len(answer)
    assert len(sample.input_ids) == expected_len
    assert [i for i, t in enumerate(sample.input_ids) if t == image_id] == [2, 3, 4, 5]
    assert sample.num_images == 1
    n_target = len(answer)
    assert sample.labels[:-n_target] == [IGNORE_INDEX] * (expected_len - n_target)
    assert sample.labels[-n_target:] == answer
    assert tokenizer.decode(sample.labels[-n_target:]) == "red<|end|>\n"


def test_every_assistant_turn_is_a_target(tokenizer):
    messages = [
        {"role": "user", "content": "<image>\nHow many shapes are there?"},
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "Is there a red shape?"},
        {"role": "assistant", "content": "no"},
    ]
    sample = tokenize_conversation(tokenizer, messages, num_image_tokens=2)
    targets = [t for t in sample.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(targets) == "3<|end|>\nno<|end|>\n"
    # The second question is context, not a target.
    assert "red" not in tokenizer.decode(targets)


def test_generation_prompt_drops_answer_and_ends_with_assistant_tag(tokenizer):
    messages = [
        {"role": "user", "content": "<image>\nWhat shape?"},
        {"role": "assistant", "content": "square"},
    ]
    sample = tokenize_conversation(tokenizer, messages, num_image_tokens=3, for_generation=True)
    text = tokenizer.decode(sample.input_ids)
    assert text.endswith("<|assistant|>\n")
    assert "square" not in text
    assert all(label == IGNORE_INDEX for label in sample.labels)


def test_unknown_speaker_names_the_record():
    with pytest.raises(ValueError, match="record r7: turn 1"):
        to_messages([{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}], "r7")
