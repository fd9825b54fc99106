"""Fixtures for the vision tests: option configs composed once, encoders built from twins.

Composing takes ~0.4 s, so each option is composed once per session (through ``make_cfg``)
and tests change a copy; building a tiny twin encoder takes a few milliseconds.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from msl_ablate.models.assemble import build_vision_encoder
from msl_ablate.models.vision.base import VisionEncoder


@pytest.fixture(scope="session")
def _composed_options() -> dict[str, DictConfig]:
    return {}


@pytest.fixture
def option_cfg(
    make_cfg: Callable[..., DictConfig], _composed_options: dict[str, DictConfig]
) -> Callable[..., DictConfig]:
    """``option_cfg("clip_b16", image_size=48)``: a copy of the composed config with
    ``vision=<name> offline_twins=true``, with ``vision.<key>`` values replaced."""

    def _get(name: str, **vision: Any) -> DictConfig:
        if name not in _composed_options:
            _composed_options[name] = make_cfg(f"vision={name}", "offline_twins=true")
        cfg = copy.deepcopy(_composed_options[name])
        for key, value in vision.items():
            OmegaConf.update(cfg.vision, key, value, force_add=True)
        return cfg

    return _get


def build_encoder(cfg: DictConfig) -> VisionEncoder:
    """Build only the vision encoder, with the same arguments as ``assemble.build_vlm``."""
    return build_vision_encoder(cfg)


@pytest.fixture
def make_encoder(option_cfg: Callable[..., DictConfig]) -> Callable[..., VisionEncoder]:
    """``make_encoder("clip_b16", image_size=48)``: the option's encoder, built from its twin."""

    def _make(name: str, **vision: Any) -> VisionEncoder:
        return build_encoder(option_cfg(name, **vision))

    return _make


@pytest.fixture
def raises_cause() -> Callable[..., Any]:
    """``with raises_cause(ValueError, "regex"):`` for errors raised inside Hydra's instantiate.

    Hydra wraps a builder's exception in ``InstantiationException``; this finds the original
    one in the ``__cause__`` chain and matches its type and message.
    """

    @contextlib.contextmanager
    def _raises(exc_type: type[BaseException], match: str) -> Iterator[None]:
        with pytest.raises(Exception) as info:
            yield
        err: BaseException | None = info.value
        while err is not None and not isinstance(err, exc_type):
            err = err.__cause__
        assert err is not None, f"no {exc_type.__name__} in the cause chain of {info.value!r}"
        assert re.search(match, str(err)), f"{match!r} not found in {err}"

    return _raises
