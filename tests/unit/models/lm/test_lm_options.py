"""Every LM option builds from its tiny twin, trains, masks labels and takes LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_class
from tests.helpers.options import chosen_options
from torch import nn

from msl_ablate.config.compose import CONF_DIR
from msl_ablate.data.conversation import IGNORE_INDEX, tokenize_conversation
from msl_ablate.models.assemble import build_vlm
from msl_ablate.training.strategy import apply_stage

LM_OPTIONS = chosen_options("lm")
ANSWERS = ("two red circles", "no")
MESSAGES = [
    {"role": "user", "content": "<image>\nWhat do you see?"},
    {"role": "assistant", "content": ANSWERS[0]},
    {"role": "user", "content": "Is there a square?"},
    {"role": "assistant", "content": ANSWERS[1]},
]
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FAMILY_TARGETS = {
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gemma": LLAMA_TARGETS,
    "stablelm2": LLAMA_TARGETS,
    "qwen1.5": LLAMA_TARGETS,
    "qwen2": LLAMA_TARGETS,
    "tinyllama": LLAMA_TARGETS,
    "smollm2": LLAMA_TARGETS,
}


def _raw(name: str) -> dict:
    return yaml.safe_load((CONF_DIR / "lm" / f"{name}.yaml").read_text())


def _build(make_cfg, name: str):
    cfg = make_cfg("vision=tiny_siglip", f"lm={name}", "offline_twins=true")
    return cfg, build_vlm(cfg)


@pytest.mark.parametrize("name", LM_OPTIONS)
def test_option_file_is_complete(name: str) -> None:
    raw = _raw(name)
    assert raw["name"] == name
    assert (CONF_DIR / "lm" / f"{name}.yaml").read_text().startswith("#")
    zoo = [d for d in raw["defaults"] if isinstance(d, str) and d.startswith("/zoo/lm/")]
    if zoo:  # a pretrained zoo member is its twin, of the option's architecture
        (entry,) = zoo
        recipe = yaml.safe_load(
            (CONF_DIR / entry.split("@")[0].lstrip("/")).with_suffix(".yaml").read_text()
        )
        assert entry.endswith("@twin") and "twin" not in raw
        assert recipe["model_class"] == raw["model_class"]
    else:
        assert raw["twin"]["model_class"] == "${..model_class}"
    assert issubclass(get_class(raw["model_class"]), nn.Module)
    assert raw["lora_target_modules"] == FAMILY_TARGETS[raw["family"]]
    expected_template = "plain" if raw["tuning"] == "base" else "checkpoint"
    if raw["checkpoint"] is not None:  # tiny_phi is its own twin, with the zoo's template
        assert raw["chat_template"] == expected_template
        assert "/" in raw["checkpoint"]  # a hub id
        if not zoo:  # a random twin stays as small as can be
            twin = raw["twin"]["config"]
            assert (twin["num_hidden_layers"], twin["hidden_size"]) == (2, 64)


@pytest.mark.parametrize(
    ("name", "tuning"),
    [
        ("phi_2", "base"),
        ("gemma_2b", "base"),
        ("gemma_2b_it", "rlhf"),
        ("stablelm2_zephyr_16b", "dpo"),
        ("tinyllama_11b_chat", "dpo"),
        ("phi3_mini_4k_instruct", "dpo"),
        ("qwen15_18b_chat", "rlhf"),
        ("qwen2_15b_instruct", "dpo"),
        ("smollm2_135m_instruct", "dpo"),
    ],
)
def test_tuning_labels(name: str, tuning: str) -> None:
    assert _raw(name)["tuning"] == tuning


@pytest.mark.parametrize("name", LM_OPTIONS)
def test_twin_trains_masks_labels_and_takes_lora(make_cfg, target_texts, name: str) -> None:
    cfg, vlm = _build(make_cfg, name)
    assert type(vlm.lm.model).__name__ == cfg.lm.model_class.rsplit(".", 1)[-1]
    tok = vlm.lm.tokenizer
    assert tok.pad_token_id is not None and tok.padding_side == "right"
    assert vlm.lm.model.get_input_embeddings().num_embeddings >= len(tok)
    sample = tokenize_conversation(tok, MESSAGES, vlm.num_image_tokens)
    ids, labels = torch.tensor(sample.input_ids), torch.tensor(sample.labels)
    assert int((ids == vlm.image_token_id).sum()) == vlm.num_image_tokens
    assert not (labels[ids == vlm.image_token_id] != IGNORE_INDEX).any()
    # Two runs of target tokens, each exactly one answer plus the template's turn end.
    assert target_texts(tok, sample) == list(ANSWERS)
    labelled = [
        t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE_INDEX
    ]
    assert any(t in vlm.lm.stop_token_ids for t in labelled)  # the model learns to stop
    prompt = tok.decode(
        [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab == IGNORE_INDEX]
    )
    assert not any(a in prompt for a in ANSWERS)

    batch = {
        "input_ids": ids[None].repeat(2, 1),
        "attention_mask": torch.ones(2, len(ids), dtype=torch.long),
        "labels": labels[None].repeat(2, 1),
        "pixel_values": torch.randn(2, 3, cfg.vision.image_size, cfg.vision.image_size),
    }
    out = vlm(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grad = vlm.lm.model.get_input_embeddings().weight.grad
    assert grad is not None and torch.isfinite(grad).all()

    # LoRA on the family's targets (one build per option keeps this folder fast).
    targets = set(cfg.lm.lora_target_modules)
    adapted = {
        n: m
        for n, m in vlm.lm.model.named_modules()
        if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets
    }
    assert {n.rsplit(".", 1)[-1] for n in adapted} == targets
    stage = cfg.strategy.stages.finetune
    stage.lm.mode, stage.lm.lr, stage.lora.r = "lora", 1e-4, 4
    apply_stage(vlm, stage)
    trainable = sum(p.numel() for p in vlm.lm.parameters() if p.requires_grad)
    assert trainable == sum(4 * (m.in_features + m.out_features) for m in adapted.values())


def test_options_are_all_listed() -> None:
    assert {"phi_15", "phi_2", "phi3_mini_4k_instruct", "gemma_2b", "gemma_2b_it"} <= set(
        LM_OPTIONS
    )
    assert {"stablelm2_16b", "stablelm2_16b_chat", "stablelm2_zephyr_16b"} <= set(LM_OPTIONS)
    assert {"qwen15_18b", "qwen15_18b_chat", "qwen2_15b", "qwen2_15b_instruct"} <= set(LM_OPTIONS)
    assert {"tinyllama_11b", "tinyllama_11b_chat", "smollm2_135m_instruct"} <= set(LM_OPTIONS)
    assert Path(CONF_DIR / "lm" / "tiny_phi.yaml").is_file()


def test_phi_runs_the_fused_gelu_with_the_same_outputs(make_cfg) -> None:
    from transformers import AutoConfig
    from transformers.activations import ACT2FN

    cfg, vlm = _build(make_cfg, "phi_15")
    model = vlm.lm.model
    assert AutoConfig.from_pretrained(model.name_or_path).hidden_act == "gelu_new"  # on disk
    assert model.config.hidden_act == "gelu_pytorch_tanh"
    mlps = [m for m in model.modules() if hasattr(m, "activation_fn")]
    assert mlps and all(type(m.activation_fn) is type(ACT2FN["gelu_pytorch_tanh"]) for m in mlps)
    ids = torch.randint(0, 64, (2, 24))
    fused = model(input_ids=ids).logits
    for m in mlps:
        m.activation_fn = ACT2FN["gelu_new"]
    torch.testing.assert_close(model(input_ids=ids).logits, fused, rtol=0, atol=1e-5)


def test_the_attention_kernel_is_an_option_with_the_same_outputs(make_cfg) -> None:
    _, default = _build(make_cfg, "phi_15")
    eager_cfg = make_cfg("vision=tiny_siglip", "lm=phi_15", "offline_twins=true",
                         "lm.attn_implementation=eager")  # fmt: skip
    eager = build_vlm(eager_cfg).lm.model
    assert default.lm.model.config._attn_implementation == "sdpa"
    assert eager.config._attn_implementation == "eager"
    ids = torch.randint(0, 64, (2, 24))
    torch.testing.assert_close(eager(input_ids=ids).logits, default.lm.model(input_ids=ids).logits,
                               rtol=0, atol=1e-5)  # fmt: skip


def test_a_phi_twin_pretrains_with_the_fused_gelu_and_saves_gelu_new(tmp_path) -> None:
    from transformers.activations import ACT2FN

    from msl_ablate.models.zoo import new_lm_twin

    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "max_position_embeddings": 64}  # fmt: skip
    model, _ = new_lm_twin(tmp_path, "transformers.PhiForCausalLM", sizes)
    mlps = [m for m in model.modules() if hasattr(m, "activation_fn")]
    assert mlps and all(type(m.activation_fn) is type(ACT2FN["gelu_pytorch_tanh"]) for m in mlps)
    assert model.config.hidden_act == "gelu_new"  # what save_pretrained writes
