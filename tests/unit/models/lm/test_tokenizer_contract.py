"""``build_causal_lm`` gives every checkpoint's tokenizer one contract (models/lm.py docstring).

The zoo twins share one tokenizer, so the per-checkpoint differences (BOS added by default, no
pad token, no ``<image>``, instruct templates with their own turn-end token, BOS inside the
template or not) are exercised here on a Llama-like tokenizer built in the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from msl_ablate.data.conversation import tokenize_conversation
from msl_ablate.models.lm import IMAGE_TOKEN, build_causal_lm

ROLE_TOKENS = ["<|user|>", "<|assistant|>", "<start_of_turn>", "<end_of_turn>", "<|im_start|>",
               "<|im_end|>", "<|end|>"]  # fmt: skip
ANSWERS = ("a red circle", "two")
MESSAGES = [
    {"role": "user", "content": f"{IMAGE_TOKEN}\nwhat is it?"},
    {"role": "assistant", "content": ANSWERS[0]},
    {"role": "user", "content": "how many?"},
    {"role": "assistant", "content": ANSWERS[1]},
]
# Templates in the style of the real checkpoints (written for this test).
ZEPHYR_STYLE = (  # TinyLlama chat, StableLM zephyr: no BOS in the template, turns end with EOS
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
GEMMA_STYLE = (  # Gemma-it: BOS rendered by the template, turns end with <end_of_turn>
    "{{ bos_token }}{% for m in messages %}{{ '<start_of_turn>' + ('model' if m['role'] == "
    "'assistant' else m['role']) + '\n' + m['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
CHATML_STYLE = (  # Qwen chat: ChatML with a default system prompt
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PHI3_STYLE = (  # Phi-3: EOS after the last turn only, so rendering is not prefix-stable
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}"
    "{{ eos_token }}{% endif %}"
)


def _llama_like(out: Path, chat_template: str | None, adds_bos: bool = True) -> Path:
    """A BPE tokenizer with <s>/</s>, no pad, no <image>, BOS added by default; a tiny Llama."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>", *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["what is it? a red circle. how many? two."] * 4, trainer=trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = chat_template
    fast.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def _build(folder: Path, chat_template: str = "checkpoint"):
    return build_causal_lm(
        name="llama_like",
        checkpoint=str(folder),
        model_class="transformers.LlamaForCausalLM",
        family="llama",
        params_b=0.0,
        chat_template=chat_template,
    )


def test_plain_template_gets_bos_pad_and_image_token(tmp_path: Path, target_texts) -> None:
    lm = _build(_llama_like(tmp_path, None), chat_template="plain")
    tok = lm.tokenizer
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == lm.image_token_id == len(tok) - 1
    assert lm.model.get_input_embeddings().num_embeddings == len(tok)  # resized for <image>
    assert tok.pad_token == tok.eos_token and tok.padding_side == "right"
    sample = tokenize_conversation(tok, MESSAGES, num_image_tokens=3)
    assert sample.input_ids[0] == tok.bos_token_id
    assert sample.input_ids.count(tok.bos_token_id) == 1
    assert sample.input_ids.count(lm.image_token_id) == 3
    assert target_texts(tok, sample) == list(ANSWERS)
    assert lm.stop_token_ids == [tok.eos_token_id]


def test_no_bos_when_the_tokenizer_adds_none(tmp_path: Path) -> None:
    lm = _build(_llama_like(tmp_path, None, adds_bos=False), chat_template="plain")
    sample = tokenize_conversation(lm.tokenizer, MESSAGES, num_image_tokens=1)
    assert lm.tokenizer.bos_token_id not in sample.input_ids


@pytest.mark.parametrize(
    ("template", "turn_end"),
    [
        (ZEPHYR_STYLE, "</s>"),
        (GEMMA_STYLE, "<end_of_turn>"),
        (CHATML_STYLE, "<|im_end|>"),
        (PHI3_STYLE, "<|end|>"),
    ],
    ids=["zephyr", "gemma", "chatml", "phi3"],
)
def test_checkpoint_templates(tmp_path: Path, target_texts, template: str, turn_end: str) -> None:
    lm = _build(_llama_like(tmp_path, template))
    tok = lm.tokenizer
    sample = tokenize_conversation(tok, MESSAGES, num_image_tokens=2)
    # BOS exactly once, first: prefixed when the template lacks it, never doubled.
    assert sample.input_ids[0] == tok.bos_token_id
    assert sample.input_ids.count(tok.bos_token_id) == 1
    assert target_texts(tok, sample) == list(ANSWERS)
    assert tok.convert_tokens_to_ids(turn_end) in lm.stop_token_ids
    assert tok.eos_token_id in lm.stop_token_ids
    generation = tokenize_conversation(tok, MESSAGES, num_image_tokens=2, for_generation=True)
    # The generation prompt is the training sequence up to the last answer, token for token.
    assert sample.input_ids[: len(generation.input_ids)] == generation.input_ids


def test_phi3_template_masks_only_answers_and_their_turn_end(tmp_path: Path) -> None:
    # Phi-3 renders EOS after the last turn only: the EOS must not become a target, and
    # <|end|> after each answer must (the model has to learn to stop).
    lm = _build(_llama_like(tmp_path, PHI3_STYLE))
    tok = lm.tokenizer
    sample = tokenize_conversation(tok, MESSAGES, num_image_tokens=2)
    targets = [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != -100]
    assert targets.count(tok.convert_tokens_to_ids("<|end|>")) == 2
    assert tok.eos_token_id not in targets
    assert tok.convert_tokens_to_ids("<|user|>") not in targets


def test_checkpoint_template_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"lm.chat_template=checkpoint.*lm.chat_template=plain"):
        _build(_llama_like(tmp_path, None))


def test_bad_dtype(tmp_path: Path) -> None:
    folder = _llama_like(tmp_path, None)
    with pytest.raises(ValueError, match="lm.torch_dtype='fp32'"):
        build_causal_lm("llama_like", str(folder), "transformers.LlamaForCausalLM", "llama", 0.0,
                        chat_template="plain", torch_dtype="fp32")  # fmt: skip
