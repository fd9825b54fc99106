"""Which benchmarks a run is evaluated on, from the ``eval`` config.

Two sources of benchmarks, one mechanism (``benchmark.evaluate_benchmark``, called per
evaluation by ``experiment.evaluations``):

* the held-out split of the training data (``eval.split``): its LLaVA conversation file is
  scored by ``exact_match``, with the majority-answer baseline of the last stage's split;
* the benchmarks that ``eval.benchmarks`` names in ``eval.suite`` (``conf/benchmarks/*.yaml``):
  files under a generated suite (``generator``) or a folder on disk (``root``).

Answers and metrics go to ``<out_dir>/<benchmark>/``; metrics are ``<stage>/<benchmark>/<metric>``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.enums import QuestionFormat
from msl_ablate.data.datamodule import resolve_data_root, split_image_dir, split_path
from msl_ablate.evaluation.benchmark import BenchmarkSpec
from msl_ablate.evaluation.scoring.exact_match import reference_answers
from msl_ablate.models.assemble import max_sequence_length
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.utils.errors import DataError
from msl_ablate.utils.files import stable_hash
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


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


def heldout_spec(cfg: DictConfig) -> BenchmarkSpec:
    """The held-out split of the training data as a benchmark scored by exact match.

    Raises:
        DataError: A record of the split carries no answer (the file and record named).
    """
    root = resolve_data_root(cfg.data, cfg.paths.data_dir)
    questions = split_path(cfg.data, root, cfg.eval.split)
    try:
        reference_answers(questions)  # fail before any generation on a file without answers
    except ValueError as err:
        raise DataError(f"eval.split={cfg.eval.split!r}: {err}") from err
    last_split = list(cfg.strategy.stages.values())[-1].split
    return BenchmarkSpec(
        name=cfg.eval.split,
        scorer="exact_match",
        questions=questions,
        image_dir=split_image_dir(cfg.data, root, cfg.eval.split),
        annotations=questions,
        max_new_tokens=cfg.eval.max_new_tokens,
        options={"baseline": split_path(cfg.data, root, last_split)},
        format=QuestionFormat.conversations,
        max_questions=cfg.eval.max_samples,
    )


# Scorer options that name a file of the suite (resolved against its root like the files).
FILE_OPTIONS = ("questions",)


def suite_specs(cfg: DictConfig, names: list[str]) -> list[BenchmarkSpec]:
    """The named benchmarks of ``eval.suite``, paths resolved against the suite root."""
    if not names:
        return []
    root = suite_root(cfg)
    specs = []
    for name in names:
        b = cfg.eval.suite.benchmarks[name]
        specs.append(
            BenchmarkSpec(
                name=name,
                scorer=b.scorer,
                questions=root / b.questions,
                image_dir=root / b.image_dir,
                annotations=None if b.annotations is None else root / b.annotations,
                prompt_suffix=b.prompt_suffix,
                max_new_tokens=b.max_new_tokens,
                options={k: root / v if k in FILE_OPTIONS else v for k, v in b.options.items()},
                export=b.export,
                format=QuestionFormat(b.format),
                repeated_ids=b.repeated_ids,
            )
        )
    return specs


def benchmark_specs(cfg: DictConfig, names: list[str] | None = None) -> list[BenchmarkSpec]:
    """Every benchmark a run is evaluated on: the held-out split (if set), then the suite's.

    Args:
        cfg: The root config.
        names: Suite benchmarks to run (default: ``eval.benchmarks``).
    """
    held_out = [heldout_spec(cfg)] if cfg.eval.split is not None else []
    return held_out + suite_specs(cfg, list(cfg.eval.benchmarks if names is None else names))


def prompt_limit(cfg: DictConfig, vlm: VisionLanguageModel) -> int:
    """Longest benchmark prompt: ``eval.max_length``, else the LM's context length."""
    if cfg.eval.max_length:
        return cfg.eval.max_length
    context = getattr(vlm.lm.model.config, "max_position_embeddings", None)
    return context or max_sequence_length(cfg, vlm)
