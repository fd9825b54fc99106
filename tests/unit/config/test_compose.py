"""Composition: every option of every group, and start-up errors that list what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from msl_ablate.config.compose import CONF_DIR, compose
from msl_ablate.utils.errors import ConfigError

COMPONENT_GROUPS = ["vision", "lm", "projector", "strategy", "data"]
OPTIONS = [(g, p.stem) for g in COMPONENT_GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_is_named_after_its_file(group, option):
    cfg = compose([f"{group}={option}"])
    assert cfg[group].name == option


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError) as err:
        compose(["vision=nosuch"])
    assert "vision/nosuch" in str(err.value)
    assert "tiny_siglip" in str(err.value)


def test_misspelt_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        compose(["vision.image_sise=224"])
    msg = str(err.value)
    assert "unknown key 'vision.image_sise'" in msg
    assert "image_size" in msg and "feature_layer" in msg


def test_wrong_type_fails_at_compose():
    with pytest.raises(ConfigError, match="seed"):
        compose(["seed=abc"])


def test_cli_reports_config_errors_without_traceback(capsys):
    from msl_ablate.cli import main

    with pytest.raises(SystemExit) as exit_info:  # Hydra cannot compose it: Hydra's exit code
        main(["train", "projector=nosuch"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Available options in 'projector'" in err and "mlp2x_gelu" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:  # composed, but fails the checks
        main(["train", "strategy.stages.finetune.lm.lr=0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "strategy.stages.finetune.lm.lr must be > 0 when mode=full, got 0.0" in err
    assert "Traceback" not in err


def test_conf_dir_is_the_repository_conf():
    assert Path(__file__).resolve().parents[3] / "conf" == CONF_DIR


FINETUNE = "strategy.stages.finetune"


def test_strategy_order_puts_a_preset_stage_between_two_others():
    cfg = compose(["preset=demo", "strategy=vfrozen_lmlora"])
    assert list(cfg.strategy.stages) == ["align", "read", "finetune"]
    # The demo's read stage trains what the strategy's finetune trains.
    assert cfg.strategy.stages.read.lm.mode == cfg.strategy.stages.finetune.lm.mode == "lora"
    tuned = compose(["preset=demo", "strategy=vfrozen_lmlora", f"{FINETUNE}.lora.r=16"])
    assert tuned.strategy.stages.read.lora.r == 16  # and its LoRA settings
    assert list(compose(["preset=demo", "strategy.order=null"]).strategy.stages)[-1] == "read"


def test_a_strategy_order_that_misses_a_stage_names_both():
    with pytest.raises(
        ConfigError, match=r"strategy.order=\['align', 'finetune'\] must name .*read"
    ):
        compose(["preset=demo", "strategy.order=[align,finetune]"])
