"""Evaluate a model on the benchmarks that ``eval.benchmarks`` names, from the ``eval`` config.

``eval.suite`` (``conf/benchmarks/*.yaml``) says where each benchmark's files are: under a
generated suite (``generator``) or a folder on disk (``root``). Answers and metrics go to
``<run_dir>/eval/<benchmark>/``; metrics are named ``<stage>/<benchmark>/<metric>``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msl_ablate.evaluation.benchmark import EXPORTS, BenchmarkSpec, evaluate_benchmark
from msl_ablate.evaluation.scoring.benchmarks import SCORERS, SPLIT_BENCHMARKS
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.utils.files import stable_hash
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

EVAL_DIR = "eval"


def eval_problems(cfg: DictConfig) -> list[str]:
    """Problems of the ``eval`` benchmark settings, each naming its config key.

    Args:
        cfg: The root config.

    Returns:
        One line per problem (empty when the settings are valid).
    """
    suite, problems = cfg.eval.suite, []
    where = f"conf/benchmarks/{suite.name}.yaml"
    for name in cfg.eval.benchmarks:
        if name not in suite.benchmarks:
            problems.append(
                f"eval.benchmarks: {name!r} is not a benchmark of eval.suite "
                f"({where}: {sorted(suite.benchmarks)})"
            )
    if cfg.eval.benchmarks and (suite.generator is None) == (not suite.root):
        problems.append(f"eval.suite: set exactly one of generator and root ({where})")
    for name, spec in suite.benchmarks.items():
        key = f"eval.suite.benchmarks.{name}"
        if spec.scorer is not None and spec.scorer not in SCORERS:
            problems.append(f"{key}.scorer={spec.scorer!r} is not one of {sorted(SCORERS)} or null")
        if spec.scorer is not None and spec.annotations is None:
            problems.append(f"{key}.annotations must be set when scorer is set")
        allowed = {"split"} if spec.scorer in SPLIT_BENCHMARKS else set()
        extra = sorted(set(spec.options) - allowed)
        if extra:
            problems.append(f"{key}.options: scorer {spec.scorer!r} takes no option(s) {extra}")
        if spec.export is not None and spec.export not in EXPORTS:
            problems.append(f"{key}.export={spec.export!r} is not one of {sorted(EXPORTS)} or null")
        if spec.max_new_tokens < 1:
            problems.append(f"{key}.max_new_tokens must be >= 1, got {spec.max_new_tokens}")
    return problems


def suite_root(cfg: DictConfig) -> Path:
    """The suite folder, generating the synthetic suite first when the config has a generator.

    Args:
        cfg: The root config (``eval.suite`` and ``paths.data_dir``).

    Returns:
        The folder that the benchmark paths are relative to.
    """
    suite = cfg.eval.suite
    if suite.generator is None:
        return Path(suite.root).expanduser()
    generator = OmegaConf.to_container(suite.generator, resolve=True)
    root = Path(cfg.paths.data_dir).expanduser() / f"{suite.name}-{stable_hash(generator, 8)}"
    instantiate(suite.generator, root=root)
    return root


def benchmark_specs(cfg: DictConfig, root: Path) -> dict[str, BenchmarkSpec]:
    """Every benchmark of ``eval.suite`` with its paths resolved against ``root``."""
    specs = {}
    for name, b in cfg.eval.suite.benchmarks.items():
        specs[name] = BenchmarkSpec(
            name=name,
            scorer=b.scorer,
            questions=root / b.questions,
            image_dir=root / b.image_dir,
            annotations=None if b.annotations is None else root / b.annotations,
            prompt_suffix=b.prompt_suffix,
            max_new_tokens=b.max_new_tokens,
            options=dict(b.options),
            export=b.export,
        )
    return specs


def prompt_limit(cfg: DictConfig, vlm: VisionLanguageModel) -> int:
    """Longest benchmark prompt: ``eval.max_length``, else the LM's context length."""
    if cfg.eval.max_length:
        return cfg.eval.max_length
    context = getattr(vlm.lm.model.config, "max_position_embeddings", None)
    return context or cfg.data.max_length


def evaluate_suite(
    cfg: DictConfig,
    vlm: VisionLanguageModel,
    run_dir: Path,
    stage: str,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Evaluate ``vlm`` on benchmarks of the suite.

    Args:
        cfg: The root config.
        vlm: The trained model.
        run_dir: The run's folder; answers go to ``<run_dir>/eval/<benchmark>/``.
        stage: The stage whose model this is (metric prefix).
        names: Benchmarks to run (default: ``eval.benchmarks``).

    Returns:
        ``{f"{stage}/{benchmark}/{metric}": value}`` for every benchmark with a scorer.
    """
    names = list(cfg.eval.benchmarks if names is None else names)
    if not names:
        return {}
    specs = benchmark_specs(cfg, suite_root(cfg))
    limit = prompt_limit(cfg, vlm)
    metrics: dict[str, float] = {}
    for name in names:
        spec = specs[name]
        metrics |= evaluate_benchmark(
            vlm,
            spec,
            run_dir / EVAL_DIR / name,
            f"{stage}/{name}",
            cfg.eval.batch_size,
            limit - spec.max_new_tokens,
        )
    return metrics
