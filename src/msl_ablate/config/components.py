"""The parts of a vision or LM option that load a checkpoint, found by structure, not by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

# A vision option's size, read only by `msl-ablate plan` (models/size.py): neither passed to
# its builder nor part of a stage key (the weights, not their description, define a model).
VISION_SIZE_KEYS = ("params_b", "patch_size")


def components(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every component spec under ``node`` (a node with a ``checkpoint``), with its config key.

    A vision or LM option is one component; a fused vision option lists several under
    ``encoders``. Works on composed configs and on plain containers alike.

    Args:
        node: ``cfg.vision``, ``cfg.lm`` or their ``to_container`` form.
        where: The node's config key, e.g. ``vision``.

    Yields:
        ``(key, spec)``, e.g. ``("vision.encoders[1]", {...})``; the spec itself, not a copy.
    """
    if isinstance(node, dict | DictConfig):
        if "checkpoint" in node:
            yield where, node
            return
        for key, value in node.items():
            yield from components(value, f"{where}.{key}")
    elif isinstance(node, list | ListConfig):
        for i, value in enumerate(node):
            yield from components(value, f"{where}[{i}]")


def zoo_members(node: Any, where: str, offline_twins: bool) -> list[str]:
    """The pretrained zoo members (``conf/zoo``) that stand in for an option's components: those
    whose twin is the model (``offline_twins`` or no checkpoint) and names a zoo recipe."""
    return [
        str(spec["twin"]["name"])
        for _, spec in components(node, where)
        if (offline_twins or spec["checkpoint"] is None)
        and isinstance(spec.get("twin"), dict | DictConfig)
        and "name" in spec["twin"]
    ]
