"""Run keys: a hash of the config values that define an experiment.

Paths, tracking and logging settings are excluded, so the same experiment has the same key on
a laptop and on a cluster; the seed is included. Each stage also gets a key that depends only
on what that stage uses, so runs whose stage-1 configs are equal can share stage 1 later.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.utils.files import stable_hash

# Dotted keys that do not change what is computed.
EXCLUDED_KEYS = (
    "paths",
    "tracking",
    "study",
    "num_threads",
    "data.num_workers",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "eval.batch_size",
)
# Twins are identified by their spec; the real checkpoint id is what matters otherwise.
KEY_LENGTH = 12


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.get(p, {})
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def experiment_values(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus ``EXCLUDED_KEYS``."""
    tree = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for key in EXCLUDED_KEYS:
        _drop(tree, key)
    return tree


def run_key(cfg: DictConfig) -> str:
    """Hash of everything that defines the experiment (seed included, paths excluded)."""
    return stable_hash(experiment_values(cfg), KEY_LENGTH)


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """One key per stage: what the model is, the data, the seed and the stages up to this one."""
    values = experiment_values(cfg)
    base = {
        k: values[k]
        for k in ("seed", "offline_twins", "vision", "lm", "projector", "data", "trainer")
    }
    keys, upto = {}, []
    for name, stage in values["strategy"]["stages"].items():
        upto.append(stage)
        keys[name] = stable_hash({**base, "stages": upto}, KEY_LENGTH)
    return keys
