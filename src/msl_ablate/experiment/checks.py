"""One check of a composed config, before anything is built: every layer's problems at once."""

from __future__ import annotations

from omegaconf import DictConfig

from msl_ablate.config.checks import check_config
from msl_ablate.evaluation.checks import eval_problems


def check(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing the config's and the evaluation's problems.

    Imports no torch: a bad config fails in the time it takes to compose it.
    """
    check_config(cfg, eval_problems(cfg))
