"""The zoo's instruct variants: SFT / DPO / safe DPO in their own chat templates, with cards."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from msl_ablate.config.compose import compose
from msl_ablate.models.chat_templates import CHAT_STYLES
from msl_ablate.models.lm import build_causal_lm
from msl_ablate.models.zoo import new_lm_twin, twin_dir
from msl_ablate.pretrain.cards import Score, read_card
from msl_ablate.pretrain.chats import REFUSAL, chats, encode
from msl_ablate.pretrain.tuning import dpo_loss, restyle, tune_lm_twin

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 256}  # fmt: skip
PHI = "transformers.PhiForCausalLM"
BASE = {"_target_": "msl_ablate.pretrain.lm.pretrain_lm_twin", "name": "tiny_base",
        "objective": "causal_lm", "model_class": PHI, "config": TINY, "steps": 20,
        "batch_size": 16, "lr": 3e-3, "seq_len": 64, "documents": 400}  # fmt: skip


@pytest.fixture(scope="module")
def zoo() -> Path:
    return Path(os.environ["MSL_ABLATE_CACHE"]) / "zoo"


def test_chats_are_deterministic_held_out_and_mix_the_harmful_class() -> None:
    records = chats(0, 300, harmful_share=0.3)
    assert records == chats(0, 300, harmful_share=0.3)
    seen = {r.prompt for r in records}
    # Another seed, other scenes: only the odd small scene recurs by chance (3 of 300 here).
    assert sum(r.prompt in seen for r in chats("heldout/0", 300)) < 10
    harmful = [r for r in records if r.harmful]
    assert 60 < len(harmful) < 120  # ~30 % of 300
    assert all(r.chosen == REFUSAL and r.rejected != REFUSAL for r in harmful)
    benign = [r for r in records if not r.harmful]
    assert all(r.chosen != r.rejected and r.chosen != REFUSAL for r in benign)
    assert len({r.kind for r in benign}) == 7  # every question writer takes its turn


@pytest.mark.parametrize("style", sorted(CHAT_STYLES))
def test_each_style_puts_eos_after_the_answer_and_only_the_answer_in_the_labels(
    zoo: Path, style: str
) -> None:
    model, tokenizer = new_lm_twin(zoo, PHI, TINY)
    restyle(model, tokenizer, CHAT_STYLES[style])  # raises unless the answer is followed by EOS
    assert tokenizer.eos_token == CHAT_STYLES[style].eos_token
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    record = chats(0, 1)[0]
    sample = encode(tokenizer, record, record.chosen)
    labelled = [t for t in sample.labels if t != -100]
    end = labelled.index(tokenizer.eos_token_id)
    assert tokenizer.decode(labelled[:end]).strip() == record.chosen
    assert tokenizer.decode(labelled[end + 1 :]).strip() == ""  # at most the turn's newline
    prompt = tokenizer.decode(encode(tokenizer, record).input_ids)
    assert record.prompt in prompt and record.chosen not in prompt.split(record.prompt)[1]


def test_each_style_renders_a_different_conversation(zoo: Path) -> None:
    rendered = set()
    for style in CHAT_STYLES.values():
        model, tokenizer = new_lm_twin(zoo, PHI, TINY)
        restyle(model, tokenizer, style)
        record = chats(0, 1)[0]
        rendered.add(tokenizer.decode(encode(tokenizer, record, record.chosen).input_ids))
    assert len(rendered) == len(CHAT_STYLES)


def test_dpo_loss_is_log2_at_the_reference_and_falls_with_the_margin() -> None:
    zero = torch.zeros(4)
    loss, accuracy = dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and accuracy.item() == 0.0
    chosen_up = torch.full((4,), 5.0)
    loss, accuracy = dpo_loss(chosen_up, zero, zero, zero, beta=0.1)
    assert loss.item() < math.log(2) and accuracy.item() == 1.0
    loss, _ = dpo_loss(zero, chosen_up, zero, zero, beta=0.1)  # the rejected one got likelier
    assert loss.item() > math.log(2)


def test_a_guard_fails_only_when_worse_and_a_score_must_beat_its_baseline() -> None:
    assert Score("x", 1.0, 1.0, guard=True).learned
    assert not Score("x", 1.0, 1.0).learned
    assert not Score("refusal_rate/benign", 0.2, 0.0, higher_is_better=False, guard=True).learned
    assert Score("refusal_rate/benign", 0.0, 0.1, higher_is_better=False, guard=True).learned


def test_a_recipe_is_checked_before_anything_is_built(zoo: Path, tmp_path: Path) -> None:
    common: dict[str, Any] = dict(zoo_dir=zoo, name="bad", base=BASE, model_class=PHI, steps=1,
                                  batch_size=2, lr=1e-3)  # fmt: skip
    with pytest.raises(ValueError, match=r"chat_style='nope'.*conf/zoo/lm/bad.yaml"):
        tune_lm_twin(tmp_path, objective="sft", chat_style="nope", **common)
    with pytest.raises(ValueError, match="takes a `dpo:` section unless it is sft"):
        tune_lm_twin(tmp_path, objective="dpo", chat_style="chatml", **common)
    with pytest.raises(ValueError, match="harmful_share must be > 0 for safe_dpo"):
        tune_lm_twin(tmp_path, objective="safe_dpo", chat_style="beaver", dpo={"steps": 1},
                     **common)  # fmt: skip
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def variants(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An SFT variant (Zephyr) of a tiny base, and a safe DPO variant (Beaver) of that SFT one."""
    out = {name: tmp_path_factory.mktemp(name) for name in ("sft", "safe")}
    sft = {"_target_": "msl_ablate.pretrain.tuning.tune_lm_twin", "_recursive_": False,
           "name": "tiny_sft",
           "base": BASE, "objective": "sft", "model_class": PHI, "chat_style": "zephyr",
           "steps": 150, "batch_size": 16, "lr": 3e-3, "chats_per_stage": 600}  # fmt: skip
    tune_lm_twin(out["sft"], zoo, **{k: v for k, v in sft.items() if not k.startswith("_")})
    dpo = {"steps": 150, "batch_size": 16, "lr": 3e-3, "beta": 0.1, "sft_weight": 1.0,
           "harmful_share": 0.3, "over_refusal_share": 0.3}  # fmt: skip
    tune_lm_twin(out["safe"], zoo, "tiny_safe", sft, "safe_dpo", PHI, "beaver", steps=40,
                 batch_size=16, lr=3e-3, chats_per_stage=600, dpo=dpo)  # fmt: skip
    return out


def test_cards_name_the_tuning_the_parent_and_beat_the_starting_model(
    variants: dict[str, Path],
) -> None:
    sft, safe = read_card(variants["sft"]), read_card(variants["safe"])
    assert sft is not None and safe is not None
    assert (sft.tuning, safe.tuning) == ("sft", "safe_rlhf")
    assert sft.parent.startswith("tiny_base-") and safe.parent.startswith("tiny_sft-")
    assert sft.steps == 150 and safe.steps == 40 + 150
    scores = {s.name: s for s in sft.scores}
    assert scores["answers_in_template_with_eos"].random_init == 0.0  # the base never stops
    assert scores["answers_in_template_with_eos"].value >= 0.9
    assert scores["heldout_answer_accuracy"].learned, scores
    safe_scores = {s.name: s for s in safe.scores}
    assert (
        safe_scores["refusal_rate/harmful"].value
        >= 0.8
        > safe_scores["refusal_rate/harmful"].random_init
    )
    assert safe_scores["refusal_rate/benign"].value <= 0.1
    assert safe_scores["refusal_rate/benign"].against == "tiny_safe after SFT"


@pytest.mark.parametrize(
    ("variant", "style", "eos"), [("sft", "zephyr", "</s>"), ("safe", "beaver", "</s>")]
)
def test_instruct_variants_answer_in_their_template_and_end_with_eos(
    variants: dict[str, Path], variant: str, style: str, eos: str
) -> None:
    """Loaded through the ordinary option path, greedy answers are one turn, closed by EOS."""
    lm = build_causal_lm(variant, str(variants[variant]), PHI, "phi", 0.001, tuning="sft")
    tokenizer, model = lm.tokenizer, lm.model.eval()
    assert tokenizer.chat_template == CHAT_STYLES[style].template and tokenizer.eos_token == eos
    ended, right = 0, 0
    records = [r for r in chats("heldout/test", 21) if not r.harmful]
    for record in records:
        # The prompt as evaluation renders it: the option's template, ending at the model's turn.
        ids = torch.tensor([encode(tokenizer, record).input_ids])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=8, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]  # fmt: skip
        answer = out.tolist()
        if tokenizer.eos_token_id in answer:
            ended += 1
            text = tokenizer.decode(answer[: answer.index(tokenizer.eos_token_id)]).strip()
            right += text == record.chosen
    assert ended >= 0.9 * len(records), f"{ended}/{len(records)} answers ended with {eos}"
    assert right >= 3  # it answers, not only stops (7 question types, some of them easy)


def test_a_variant_recipe_composes_its_whole_lineage_and_a_changed_base_is_a_new_member(
    zoo: Path,
) -> None:
    cfg = compose(["lm=tiny_phi_dpo", "vision=tiny_siglip"])
    twin = cfg.lm.twin
    assert twin.chat_style == "chatml" and twin.base.name == "tiny_phi_sft"
    assert twin.base.base.name == "tiny_phi" and twin.base.chat_style == "zephyr"
    assert cfg.lm.tuning == "dpo" and cfg.lm.model_class == twin.model_class
    it = compose(["lm=gemma_2b_it"]).lm.twin
    assert it.name == "tiny_gemma_it" and it.base.name == "tiny_gemma" and it.chat_style == "gemma"
    recipe = OmegaConf.to_container(twin, resolve=True)
    changed = OmegaConf.to_container(twin, resolve=True)
    changed["base"]["base"]["steps"] += 1
    assert twin_dir(zoo, "tiny_phi_dpo", recipe) != twin_dir(zoo, "tiny_phi_dpo", changed)
