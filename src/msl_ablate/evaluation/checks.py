"""Problems of the ``eval`` settings, found before anything is built (no torch, no files read)."""

from __future__ import annotations

from omegaconf import DictConfig

from msl_ablate.evaluation.scoring.benchmarks import EXPORTS, SCORERS, option_problem


def eval_problems(cfg: DictConfig) -> list[str]:
    """Problems of the ``eval`` benchmark settings, each naming its config key.

    Args:
        cfg: The root config.

    Returns:
        One line per problem (empty when the settings are valid); ``config.checks.check_config``
        reports them with the other groups' problems.
    """
    suite, problems = cfg.eval.suite, []
    where = f"conf/benchmarks/{suite.name}.yaml"
    for name in cfg.eval.benchmarks:
        if name not in suite.benchmarks:
            problems.append(
                f"eval.benchmarks: {name!r} is not a benchmark of eval.suite "
                f"({where}: {sorted(suite.benchmarks)})"
            )
    if cfg.eval.split is not None and cfg.eval.split in suite.benchmarks:
        problems.append(
            f"eval.split={cfg.eval.split!r} is also a benchmark of eval.suite ({where}); their "
            f"metrics would share the name <stage>/{cfg.eval.split}/*"
        )
    if cfg.eval.benchmarks and (suite.generator is None) == (not suite.root):
        problems.append(f"eval.suite: set exactly one of generator and root ({where})")
    if cfg.eval.max_new_tokens < 1:
        problems.append(f"eval.max_new_tokens must be >= 1, got {cfg.eval.max_new_tokens}")
    for name, spec in suite.benchmarks.items():
        key = f"eval.suite.benchmarks.{name}"
        if spec.scorer is not None and spec.scorer not in SCORERS:
            problems.append(f"{key}.scorer={spec.scorer!r} is not one of {sorted(SCORERS)} or null")
        elif spec.scorer is not None:
            if spec.annotations is None:
                problems.append(f"{key}.annotations must be set when scorer is set")
            problem = option_problem(spec.scorer, dict(spec.options))
            if problem:
                problems.append(f"{key}.options: {problem}")
        elif spec.options:
            problems.append(f"{key}.options are set but {key}.scorer is null")
        if spec.export is not None and spec.export not in EXPORTS:
            problems.append(f"{key}.export={spec.export!r} is not one of {sorted(EXPORTS)} or null")
        if spec.max_new_tokens < 1:
            problems.append(f"{key}.max_new_tokens must be >= 1, got {spec.max_new_tokens}")
    return problems
