"""One check of a composed config, before anything is built: every layer's problems at once."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from msl_ablate.config.checks import check_config
from msl_ablate.config.compose import absolutize_paths, compose, sweep_jobs
from msl_ablate.evaluation.checks import eval_problems


def check(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing the config's and the evaluation's problems.

    Imports no torch: a bad config fails in the time it takes to compose it.
    """
    check_config(cfg, eval_problems(cfg))


def checked_sweep(
    overrides: list[str], config_name: str = "train", config_dir: str | Path | None = None
) -> tuple[list[list[str]], list[DictConfig]]:
    """The jobs of a ``-m`` sweep (each one's overrides) and their configs, composed with
    absolute paths and checked, as ``status`` and ``plan`` read a sweep.

    Raises:
        ConfigError: A job's config is invalid (the first one found).
    """
    jobs = sweep_jobs(overrides, config_name, config_dir)
    configs = [compose(job, config_name, config_dir) for job in jobs]
    for cfg in configs:
        absolutize_paths(cfg)
        check(cfg)
    return jobs, configs
