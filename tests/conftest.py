"""Shared fixtures: one cache of tiny twins per session, configs composed with tmp paths."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from msl_ablate.config.compose import compose

# Tests never read the user's cache; the zoo and data are built once per session.
TINY_OVERRIDES = [
    "data.generator.n_captions=16",
    "data.generator.n_instruct=32",
    "data.generator.n_eval=8",
    "strategy.stages.align.max_steps=2",
    "strategy.stages.align.batch_size=4",
    "strategy.stages.finetune.max_steps=2",
    "strategy.stages.finetune.batch_size=4",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "eval.batch_size=8",
    "eval.max_new_tokens=2",
    "eval.suite.generator.n_questions=6",
    "eval.suite.generator.image_size=32",
]


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("msl-cache")
    os.environ["MSL_ABLATE_CACHE"] = str(cache)
    # The zoo's recipes built with a few steps (seconds, not minutes), here and in subprocesses.
    os.environ["MSL_ABLATE_ZOO_MAX_STEPS"] = "3"
    torch.set_num_threads(2)
    return cache


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The command-line overrides that make a run take seconds (for CLI tests)."""
    return list(TINY_OVERRIDES)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with tiny sizes and outputs under ``tmp_path``.

    Usage: ``cfg = make_cfg("vision=tiny_siglip", "seed=1")``.
    """

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        cfg = compose([*(TINY_OVERRIDES if tiny else []), f"paths.root={tmp_path}", *overrides])
        with open_dict(cfg):
            cfg.paths.cache_dir = os.environ["MSL_ABLATE_CACHE"]
        return cfg

    return _make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def stage_batch(make_cfg: Callable[..., DictConfig]) -> Callable[..., tuple]:
    """A tiny model as a stage trains it and a batch of that stage's split, as the collator makes
    it (``ids`` removed). Usage: ``cfg, vlm, batch = stage_batch("align", "strategy=...", n=8)``.
    """

    def _make(stage: str, *overrides: str, n: int = 4) -> tuple:
        from msl_ablate.data.collate import VLMCollator
        from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
        from msl_ablate.models.assemble import build_vlm, max_sequence_length
        from msl_ablate.training.strategy import apply_stages_through

        cfg = make_cfg(*overrides)
        vlm = build_vlm(cfg)
        apply_stages_through(vlm, cfg.strategy.stages, stage)
        node = cfg.strategy.stages[stage]
        data = VLMDataModule(
            cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), node.split,
            vlm.lm.tokenizer, vlm.vision.image_transform, vlm.num_image_tokens,
            max_sequence_length(cfg, vlm), n,
        )  # fmt: skip
        data.setup()
        batch = VLMCollator(vlm.lm.tokenizer.pad_token_id)([data.train_set[i] for i in range(n)])
        batch.pop("ids")
        return cfg, vlm, batch

    return _make
