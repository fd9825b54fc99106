"""Compose the config outside ``@hydra.main`` (tests, ``describe``, start-up validation).

Hydra already rejects an unknown option and lists the valid ones; for a misspelt key it
only says the key is not in the struct. ``compose`` re-raises both as one ``ConfigError``
that names the key and lists the keys that are valid there.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from msl_ablate.config.schema import register_schemas
from msl_ablate.utils.errors import ConfigError

# conf/ sits at the repository root, beside src/ (the package is installed editable).
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def config_dir() -> Path:
    """The Hydra config folder (``$MSL_ABLATE_CONF_DIR`` overrides the repository's ``conf/``)."""
    path = Path(os.environ.get("MSL_ABLATE_CONF_DIR", CONF_DIR))
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"no train.yaml in config folder {path}; install msl-ablate editable from its "
            "repository (pip install -e .) or set MSL_ABLATE_CONF_DIR"
        )
    return path


def _bad_key(err: BaseException) -> str | None:
    """The full key of an OmegaConf error somewhere in the exception chain."""
    while err is not None:
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            return err.full_key
        err = err.__cause__ or err.__context__
    return None


def _chain(err: BaseException | None) -> list[BaseException]:
    chain = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__
    return chain[:2]


def _valid_keys(
    overrides: list[str], config_name: str, full_key: str, extra_dir: Path | None = None
) -> list[str] | None:
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    leaf = full_key.rsplit(".", 1)[-1]
    kept = [
        o
        for o in overrides
        if full_key not in o.split("=", 1)[0] and leaf not in o.split("=", 1)[0]
    ]
    try:
        cfg = _compose(kept, config_name, extra_dir)
    except (HydraException, OmegaConfBaseException):
        return None
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return sorted(node.keys()) if isinstance(node, DictConfig) else None


def _compose(
    overrides: list[str], config_name: str, extra_dir: Path | None = None, hydra: bool = False
) -> DictConfig:
    register_schemas()
    if extra_dir is None:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides, return_hydra_config=hydra)
    # As `--config-dir`: the primary config is in extra_dir, `conf/` is searched too.
    search = f"hydra.searchpath=[file://{config_dir()}]"
    with initialize_config_dir(str(Path(extra_dir).resolve()), version_base="1.3"):
        return hydra_compose(config_name, [search, *overrides], return_hydra_config=hydra)


def compose(
    overrides: list[str] | None = None,
    config_name: str = "train",
    extra_dir: str | Path | None = None,
    hydra: bool = False,
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides.

    Args:
        overrides: e.g. ``["vision=tiny_siglip", "strategy.stages.align.max_steps=2"]``.
        config_name: The primary config.
        extra_dir: A folder holding the primary config, as ``train --config-dir`` (e.g.
            ``sweeps``); ``conf/`` is searched too.
        hydra: Keep the ``hydra`` node (e.g. ``hydra.sweeper.params``).

    Returns:
        The composed config (unresolved interpolations kept).

    Raises:
        ConfigError: An unknown option, a misspelt key or a wrong type; the message names it
            and lists what is valid.
    """
    overrides = list(overrides or [])
    try:
        cfg = _compose(overrides, config_name, extra_dir and Path(extra_dir), hydra)
    except (HydraException, OmegaConfBaseException) as err:
        message = "; ".join(str(e).strip() for e in _chain(err) if str(e).strip())
        key = _bad_key(err)
        if key is not None and ("not in struct" in message or "not in" in message):
            valid = _valid_keys(overrides, config_name, key, extra_dir and Path(extra_dir))
            if valid:
                where = key.rsplit(".", 1)[0] if "." in key else "the root config"
                message = f"unknown key '{key}'. Valid keys in {where}: {', '.join(valid)}"
        raise ConfigError(message) from err
    order_stages(cfg)
    return cfg


def order_stages(cfg: DictConfig) -> None:
    """Put ``strategy.stages`` in ``strategy.order`` (when set), the order every stage loop uses.

    Raises:
        ConfigError: ``strategy.order`` does not name each stage exactly once.
    """
    strategy = cfg.get("strategy")
    order = None if strategy is None else strategy.get("order")
    if order is None:
        return
    if sorted(order) != sorted(strategy.stages):
        raise ConfigError(
            f"strategy.order={list(order)} must name each stage of strategy.stages once: "
            f"{list(strategy.stages)}"
        )
    strategy.stages = {name: strategy.stages[name] for name in order}


def absolutize_paths(cfg: DictConfig) -> None:
    """Make ``paths.*`` absolute (``~`` expanded) so that every derived path is too."""
    for key in ("root", "cache_dir"):
        cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())


def job_labels(jobs: list[list[str]]) -> list[str]:
    """Each job of a sweep named by the overrides that vary between jobs (all of them if none do)."""
    varying = [i for i in range(len(jobs[0]) if jobs else 0)
               if len({tuple(j)[i] for j in jobs}) > 1]  # fmt: skip
    return [" ".join(job[k] for k in varying) or " ".join(job) or "(defaults)" for job in jobs]


def sweeps_dir() -> Path:
    """The repository's ``sweeps/`` (beside ``conf/``)."""
    return config_dir().parent / "sweeps"


def sweep_jobs(
    overrides: list[str], config_name: str = "train", extra_dir: str | Path | None = None
) -> list[list[str]]:
    """The overrides of each job of a ``-m`` sweep, as Hydra's basic sweeper expands them.

    The primary config's ``hydra.sweeper.params`` come first, then the command line (a
    command-line ``key=a,b`` replaces the config's sweep of that key), as ``train -m`` does.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [text for text, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    params = compose(fixed, config_name, extra_dir, hydra=True).hydra.sweeper.params or {}
    given = {o.get_key_element() for o in parsed}
    swept = [f"{k}={v}" for k, v in params.items() if k not in given]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(swept + overrides), None)
    return batch
