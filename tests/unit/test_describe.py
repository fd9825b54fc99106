"""``msl-ablate describe``: checkpoints, parameters per stage, image tokens, errors -> exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.helpers.options import chosen_options

from msl_ablate.cli import main as cli_main
from msl_ablate.commands.describe import main

BASE = ["vision=tiny_siglip", "offline_twins=true", "data.max_length=100"]


def _counts(out: str, stage: str) -> dict[str, tuple[str, int, int]]:
    """``{component: (mode, trainable, total)}`` from the table of one stage."""
    section = out.split(f"stage {stage} (")[1].split("\nstage ")[0]
    rows = re.findall(r"^\s+(vision|projector|lm)\s+(\w+)\s+([\d,]+)\s+([\d,]+)$", section, re.M)
    return {c: (mode, int(t.replace(",", "")), int(n.replace(",", ""))) for c, mode, t, n in rows}


def test_describe_prints_the_model(tmp_path: Path, capsys) -> None:
    argv = [*BASE, "lm=qwen2_15b_instruct", "strategy=vfull_lmlora", f"paths.root={tmp_path}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lm=qwen2_15b_instruct" in out and "strategy=vfull_lmlora" in out
    assert "tuning=dpo" in out and "chat_template=checkpoint" in out
    zoo = re.findall(r"^\s+(vision|lm)\s+(\S+)$", out, re.M)  # config key, checkpoint
    assert [g for g, _ in zoo] == ["vision", "lm"]
    assert all(Path(path).is_dir() for _, path in zoo)  # the twins, resolved and built
    assert "image tokens: 16 per image" in out
    assert "sequence budget: 100 = 16 image tokens + 84 text tokens" in out

    align, finetune = _counts(out, "align"), _counts(out, "finetune")
    assert [m for m, _, _ in align.values()] == ["frozen", "full", "frozen"]
    assert align["vision"][1] == 0 and align["lm"][1] == 0
    assert align["projector"][1] == align["projector"][2] > 0
    assert [m for m, _, _ in finetune.values()] == ["full", "full", "lora"]
    # All of the tower trains but its final norm (256 = 2 x 128: it never feeds the features).
    assert finetune["vision"][1] == finetune["vision"][2] - 256
    lora = finetune["lm"][2] - align["lm"][2]  # the adapters are new parameters
    assert finetune["lm"][1] == lora > 0


def test_describe_reports_config_errors(tmp_path: Path, capsys) -> None:
    argv = [*BASE, "strategy.stages.finetune.lm.lr=0", f"paths.root={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("msl-ablate describe: invalid config (1 problem(s)):")
    assert "strategy.stages.finetune.lm.lr must be > 0 when mode=full, got 0.0" in err


def test_describe_reports_unknown_options(tmp_path: Path, capsys) -> None:
    assert main([*BASE, "lm=phi_7", f"paths.root={tmp_path}"]) == 2
    assert "phi_2" in capsys.readouterr().err  # Hydra lists the valid options


def test_describe_reports_errors_found_on_the_model(tmp_path: Path, capsys) -> None:
    argv = [
        *BASE, "strategy.stages.finetune.vision.mode=partial",
        "strategy.stages.finetune.vision.lr=1e-5",
        "strategy.stages.finetune.vision.trainable_blocks=50", f"paths.root={tmp_path}",
    ]  # fmt: skip
    assert cli_main(["describe", *argv]) == 2
    assert "strategy.stages.finetune.vision.trainable_blocks=50" in capsys.readouterr().err


def test_describe_no_room_for_text(tmp_path: Path, capsys) -> None:
    assert main([*BASE[:-1], "data.max_length=16", f"paths.root={tmp_path}"]) == 2
    captured = capsys.readouterr()
    assert "image tokens: 16 per image" in captured.out
    assert "data.max_length=16 leaves no room for text after 16 image tokens" in captured.err
    assert "set data.max_length=128 or null" in captured.err  # the value to set


def test_describe_derives_the_budget_from_the_image_tokens(tmp_path: Path, capsys) -> None:
    # SigLIP-384: 729 image tokens; with data.max_length null the text keeps its own budget.
    argv = ["vision=siglip_so400m_p14_384", "lm=phi_2", "offline_twins=true"]
    assert main([*argv, "data.max_text_length=256", f"paths.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "sequence budget: 985 = 729 image tokens + 256 text tokens" in out
    assert "(derived: data.max_length is null)" in out
    assert main([*argv, "data.max_length=4096", f"paths.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "exceeds the context of lm=phi_2 (2048 tokens); set data.max_text_length=1319" in err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_describe_help(flag: str, capsys) -> None:
    assert main([flag]) == 0
    assert "usage: msl-ablate describe" in capsys.readouterr().out


VISION_OPTIONS = chosen_options("vision")


@pytest.mark.parametrize("vision", VISION_OPTIONS)
def test_every_vision_option_fits_the_default_budget(vision: str, tmp_path: Path, capsys) -> None:
    # data.max_length follows the model: 729 SigLIP-384 tokens fit as well as 16 tiny ones.
    argv = [f"vision={vision}", "lm=phi_2", "offline_twins=true", f"paths.root={tmp_path}"]
    assert main(argv) == 0, capsys.readouterr().err
    tokens = int(re.search(r"image tokens: (\d+) per image", capsys.readouterr().out).group(1))
    assert tokens > 0
