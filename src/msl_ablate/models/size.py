"""How big a vision or LM option is, without loading its weights (for ``msl-ablate plan``).

A transformers component is sized exactly: its ``config.json`` (the twin's folder, or the real
checkpoint when the Hugging Face cache has it) is instantiated on the meta device, which
allocates nothing. Otherwise the option's own ``params_b`` (and, for vision, ``patch_size``)
is used, as written in its YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.components import components
from msl_ablate.models.zoo import capped, twin_dir


@dataclass(frozen=True)
class ComponentSize:
    """Parameters (of a vision tower: up to its feature layer) and, for one, its patch size.

    Attributes:
        source: Where the numbers come from (a folder, a hub id or the option's YAML).
    """

    params: int
    patch_size: int | None
    source: str


def _hf_config(path: str) -> Any | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):  # not built / not in the Hugging Face cache
        return None


def _count_on_meta(model_class: str, config: Any, feature_layer: int | None = None) -> int:
    """Parameters of the model as built: a vision tower (``feature_layer``) cut at it."""
    from msl_ablate.models.vision.hf import cut_tower

    cls = get_class(model_class)
    with torch.device("meta"):
        model = cls(config)
    if feature_layer is not None:
        cut_tower(model, feature_layer)
    return sum(p.numel() for p in model.parameters())


def _patch_size(config: Any) -> int | None:
    for node in (config, getattr(config, "vision_config", None)):
        if node is not None and isinstance(getattr(node, "patch_size", None), int):
            return node.patch_size
    return None


def _one(
    spec: dict[str, Any], offline_twins: bool, zoo_dir: str, max_steps: int | None
) -> ComponentSize | str:
    twin = spec.get("twin")
    if offline_twins or not spec.get("checkpoint"):
        if not twin:
            return f"{spec['name']} has no twin"
        where = str(twin_dir(zoo_dir, spec["name"], capped(twin, max_steps)))
    else:
        where = spec["checkpoint"]
    model_class = spec.get("model_class", "")
    if model_class.startswith("transformers."):
        config = _hf_config(where)
        if config is not None:
            params = _count_on_meta(model_class, config, spec.get("feature_layer"))
            return ComponentSize(params, _patch_size(config), where)
    if where != spec.get("checkpoint"):  # a twin that is not built yet: its size is unknown
        return f"zoo member {where} is not built yet (make zoo)"
    if spec.get("params_b") is None:
        return (
            f"{spec['name']}: {where} is not in the Hugging Face cache and the option sets "
            f"no params_b"
        )
    return ComponentSize(
        round(spec["params_b"] * 1e9), spec.get("patch_size"), f"params_b of {spec['name']}"
    )


def component_size(
    spec: DictConfig, offline_twins: bool, zoo_dir: str, max_steps: int | None = None
) -> ComponentSize | str:
    """The size of ``cfg.vision`` or ``cfg.lm`` (a fused vision option: its encoders summed).

    Args:
        spec: The option.
        offline_twins: Size the tiny twin instead of the real checkpoint.
        zoo_dir: Where twins are built.
        max_steps: ``zoo.max_steps`` (a capped twin lives in another folder).

    Returns:
        The size, or why it is unknown.
    """
    plain = OmegaConf.to_container(spec, resolve=True)
    sizes = [
        _one(part, offline_twins, str(zoo_dir), max_steps) for _, part in components(plain, "")
    ]
    unknown = [s for s in sizes if isinstance(s, str)]
    if unknown:
        return "; ".join(unknown)
    return ComponentSize(
        sum(s.params for s in sizes),
        next((s.patch_size for s in sizes if s.patch_size), plain.get("patch_size")),
        ", ".join(s.source for s in sizes),
    )
