"""``msl-ablate train``: the Hydra entry point. Seed, check, run, return the sweep metric."""

from __future__ import annotations

import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from msl_ablate.config.checks import check_config
from msl_ablate.config.compose import config_dir
from msl_ablate.config.schema import register_schemas
from msl_ablate.utils.logging import get_logger, route_library_logs

log = get_logger(__name__)

register_schemas()


def absolutize_paths(cfg: DictConfig) -> None:
    """Make ``paths.*`` absolute (``~`` expanded) so that every derived path is too."""
    for key in ("root", "cache_dir"):
        cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())


def run_train(cfg: DictConfig) -> dict:
    """Check the config and run the experiment (shared by the CLI and the tests)."""
    from msl_ablate import experiment

    route_library_logs()
    # Frozen modules are kept in eval mode on purpose; tiny test datasets trip the logging hint.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    absolutize_paths(cfg)
    check_config(cfg)
    return experiment.run(cfg)


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Train and evaluate one point of the design space; returns the overall eval accuracy."""
    result = run_train(cfg)
    headline = [v for k, v in result["metrics"].items() if k.endswith("/exact_match")]
    return headline[0] if headline else float("nan")
