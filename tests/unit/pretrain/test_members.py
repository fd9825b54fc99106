"""The zoo's recipes, the options that use them, and `msl-ablate zoo build|list`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from msl_ablate.cli import main
from msl_ablate.config.compose import config_dir
from msl_ablate.experiment.checks import check
from msl_ablate.models.zoo import resolve_checkpoint
from msl_ablate.pretrain.cards import read_card
from msl_ablate.pretrain.members import members, recipe_names
from msl_ablate.utils.errors import ConfigError


def test_every_recipe_is_named_after_its_file_and_has_a_step_budget() -> None:
    found = members()
    assert {m.name for m in found} == {n for k in ("vision", "lm") for n in recipe_names(k)}
    assert "tiny_phi" in {m.name for m in found}
    for m in found:
        assert m.recipe["steps"] > 0 and m.recipe["_target_"].startswith("msl_ablate.pretrain.")


def test_options_load_their_recipe_as_twin(make_cfg) -> None:
    cfg = make_cfg("lm=phi_2")
    assert cfg.lm.twin.name == "tiny_phi_large"
    assert cfg.lm.twin.model_class == cfg.lm.model_class
    check(cfg)  # the twin's architecture matches the option's


def test_a_twin_of_another_architecture_is_a_config_error(make_cfg) -> None:
    cfg = make_cfg("lm=gemma_2b")
    with open_dict(cfg):
        cfg.lm.twin.model_class = "transformers.PhiForCausalLM"
    with pytest.raises(ConfigError, match=r"lm.twin.model_class=.*differs.*conf/lm/gemma_2b.yaml"):
        check(cfg)


def test_zoo_build_and_the_option_resolve_to_the_same_member(make_cfg, capsys) -> None:
    cfg = make_cfg("lm=tiny_phi")
    overrides = [f"paths.cache_dir={cfg.paths.cache_dir}", "zoo.max_steps=2"]
    assert main(["zoo", "build", "--only", "tiny_phi", *overrides]) == 0
    out = capsys.readouterr().out
    assert "[1/1] lm tiny_phi" in out and "heldout_perplexity" in out
    folder = Path(resolve_checkpoint(cfg.lm, True, cfg.paths.zoo_dir, 2))
    assert folder.name.startswith("tiny_phi-")
    card = read_card(folder)
    # Capped (pretraining and exercises), and built once (not rebuilt here).
    assert card is not None and card.recipe["steps"] == card.recipe["exercises"]["steps"] == 2
    assert card.steps == 4
    assert main(["zoo", "list", "--only", "tiny_phi", *overrides]) == 0
    listed = capsys.readouterr().out
    assert "tiny_phi" in listed and " yes " in listed and "random" in listed


def test_zoo_names_an_unknown_recipe(capsys) -> None:
    assert main(["zoo", "list", "--only", "tiny_nope"]) == 2
    err = capsys.readouterr().err
    assert "no zoo recipe named ['tiny_nope']" in err and "tiny_phi" in err


def test_recipes_live_under_conf_zoo() -> None:
    assert (config_dir() / "zoo" / "lm" / "tiny_phi.yaml").is_file()


def test_a_member_is_the_same_whatever_the_callers_thread_count(make_cfg, tmp_path) -> None:
    # Without a fixed build thread count the 1-thread build differed (float sums reordered).
    cfg = make_cfg("vision=tiny_siglip")
    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            zoo = tmp_path / f"zoo{threads}"
            folder = Path(resolve_checkpoint(cfg.vision, True, zoo, 3))
            assert torch.get_num_threads() == threads  # the caller's count is back
            weights.append(load_file(folder / "model.safetensors"))
    finally:
        torch.set_num_threads(before)
    one, two = weights
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)
