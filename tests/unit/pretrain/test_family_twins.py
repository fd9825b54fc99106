"""Offline, a base option and its instruct siblings load different twins: the base vs instruct axis.

Every LM option with a real checkpoint takes a zoo member as its twin: a base option a pretrained
LM of its family, an instruct option that LM tuned in the template its real checkpoint uses
(``conf/zoo/lm/*.yaml``). Composing the options is enough to check the lineage; one variant is
built (steps capped by the tests' ``MSL_ABLATE_ZOO_MAX_STEPS``) to check the Phi-3 style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from tests.helpers.options import chosen_options
from transformers import AutoTokenizer

from msl_ablate.config.compose import compose
from msl_ablate.experiment.checks import check
from msl_ablate.models.chat_templates import CHAT_STYLES
from msl_ablate.models.zoo import resolve_checkpoint, twin_dir
from msl_ablate.pretrain.cards import read_card

LM_OPTIONS = chosen_options("lm")
# The template each instruct checkpoint is tuned in (its option's comments): its twin's style.
CHAT_STYLE = {
    "gemma_2b_it": "gemma",
    "phi3_mini_4k_instruct": "phi3",
    "qwen15_18b_chat": "chatml",
    "qwen2_15b_instruct": "chatml",
    "smollm2_135m_instruct": "chatml",
    "stablelm2_16b_chat": "chatml",
    "stablelm2_zephyr_16b": "zephyr",
    "tinyllama_11b_chat": "zephyr",
}
# Each instruct option with a base option in conf/lm, and that base.
SIBLINGS = {
    "gemma_2b_it": "gemma_2b",
    "qwen15_18b_chat": "qwen15_18b",
    "qwen2_15b_instruct": "qwen2_15b",
    "stablelm2_16b_chat": "stablelm2_16b",
    "stablelm2_zephyr_16b": "stablelm2_16b",
    "tinyllama_11b_chat": "tinyllama_11b",
}
# Instruct options whose family has no base option: the zoo member their twin starts from.
BASE_MEMBER = {"phi3_mini_4k_instruct": "tiny_phi3", "smollm2_135m_instruct": "tiny_smollm2"}
# The zoo objective that stands in for each tuning (DPO for RLHF, as the zoo's docs say).
OBJECTIVE = {"sft": "sft", "dpo": "dpo", "rlhf": "dpo", "safe_rlhf": "safe_dpo"}


def _lm(option: str) -> dict[str, Any]:
    return OmegaConf.to_container(compose([f"lm={option}"]).lm, resolve=True)


@pytest.fixture(scope="module")
def options() -> dict[str, dict[str, Any]]:
    """The LM options with a real checkpoint, composed and resolved."""
    found = {name: _lm(name) for name in LM_OPTIONS}
    return {name: lm for name, lm in found.items() if lm["checkpoint"]}


def test_the_tables_cover_every_instruct_option(options: dict[str, dict[str, Any]]) -> None:
    instruct = {name for name, lm in options.items() if lm["tuning"] != "base"}
    assert instruct == set(CHAT_STYLE)  # a new instruct option: add its template here
    assert set(SIBLINGS) | set(BASE_MEMBER) == instruct
    assert all(options[base]["tuning"] == "base" for base in SIBLINGS.values())


def test_every_option_twin_is_a_zoo_member_of_its_class(
    options: dict[str, dict[str, Any]], make_cfg
) -> None:
    for name, lm in options.items():
        twin = lm["twin"]
        assert twin["_target_"].startswith("msl_ablate.pretrain."), name  # no random twin left
        assert twin["model_class"] == lm["model_class"], name
        builder = "pretrain_lm_twin" if lm["tuning"] == "base" else "tune_lm_twin"
        assert twin["_target_"].endswith(builder), name
    check(make_cfg("lm=phi3_mini_4k_instruct"))  # config/checks.py agrees


@pytest.mark.parametrize("instruct", sorted(CHAT_STYLE))
def test_an_instruct_twin_is_its_base_tuned_in_the_checkpoint_template(
    options: dict[str, dict[str, Any]], instruct: str, tmp_path: Path
) -> None:
    lm = options[instruct]
    twin = lm["twin"]
    assert twin["chat_style"] == CHAT_STYLE[instruct] and twin["chat_style"] in CHAT_STYLES
    assert twin["objective"] == OBJECTIVE[lm["tuning"]]
    if twin["objective"] != "sft":
        assert twin["dpo"]["sft_weight"] == 1.0  # keeps the chosen answer likely (docs/zoo.md)
    if instruct in SIBLINGS:
        base = options[SIBLINGS[instruct]]
        assert base["family"] == lm["family"]
        assert twin["base"] == base["twin"]  # the very recipe the base option loads
        here, there = twin_dir(tmp_path, instruct, twin), twin_dir(tmp_path, "b", base["twin"])
        assert here != there
    else:
        assert twin["base"]["name"] == BASE_MEMBER[instruct]
        assert twin["base"]["_target_"].endswith("pretrain_lm_twin")


def test_no_two_options_of_different_tuning_or_template_share_a_twin(
    options: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    folders: dict[Path, set[tuple[str, str]]] = {}
    for name, lm in options.items():
        style = lm["twin"].get("chat_style", "base")
        folders.setdefault(twin_dir(tmp_path, name, lm["twin"]), set()).add((lm["tuning"], style))
    # Options may share a member (the same recipe), never across a tuning or a template.
    assert all(len(kinds) == 1 for kinds in folders.values()), folders


def test_phi3_twin_ends_its_turns_with_end(make_cfg) -> None:
    cfg = make_cfg("lm=phi3_mini_4k_instruct", "offline_twins=true")
    folder = Path(resolve_checkpoint(cfg.lm, True, cfg.paths.zoo_dir, cfg.zoo.max_steps))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|end|>"
    assert tokenizer.chat_template == CHAT_STYLES["phi3"].template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}], tokenize=False
    )
    assert text == "<|user|>\nQ?<|end|>\n<|assistant|>\nA.<|end|>\n"
    card = read_card(folder)
    assert card is not None and card.tuning == "dpo" and card.parent.startswith("tiny_phi3-")
