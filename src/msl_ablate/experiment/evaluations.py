"""Evaluations as nodes of the stage graph: (trained model, benchmark, protocol).

Each one has its folder ``trainings/<training_key>/evals/<benchmark>-<protocol>/`` whose
``evaluation.json`` (written last) says it is done, and one nested MLflow run. Changing the
protocol (benchmark files, suffix, decoding, max_new_tokens, batch size, ...) makes a new
evaluation and never retrains; an unchanged one is never run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from msl_ablate.evaluation.benchmark import BenchmarkSpec
from msl_ablate.experiment.keys import evaluation_key, protocol_inputs, protocol_key
from msl_ablate.experiment.layout import TrainingLayout
from msl_ablate.tracking.mlflow_run import EVALUATION, Tracker, flatten
from msl_ablate.utils.files import read_json, write_json_atomic
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """One benchmark under one protocol, for one trained model.

    Attributes:
        spec: The benchmark.
        protocol: Its fingerprint's inputs (``experiment.keys.protocol_inputs``).
        protocol_key: The fingerprint.
        key: The evaluation key (training key, benchmark, protocol).
        out_dir: ``trainings/<training_key>/evals/<benchmark>-<protocol_key>``.
    """

    spec: BenchmarkSpec
    protocol: dict[str, Any]
    protocol_key: str
    key: str
    out_dir: Path

    @property
    def record_path(self) -> Path:
        return self.out_dir / "evaluation.json"

    def record(self) -> dict[str, Any] | None:
        """The finished evaluation's record, or None."""
        return read_json(self.record_path) if self.record_path.is_file() else None


def plan_evaluations(
    cfg: DictConfig, specs: list[BenchmarkSpec], training: TrainingLayout
) -> list[Evaluation]:
    """The evaluations a config asks of its trained model."""
    out = []
    for spec in specs:
        protocol = protocol_inputs(spec, cfg)
        pkey = protocol_key(protocol)
        out.append(
            Evaluation(
                spec, protocol, pkey, evaluation_key(training.key, spec.name, pkey),
                training.eval_dir(spec.name, pkey),
            )
        )  # fmt: skip
    return out


def run_evaluation(
    evaluation: Evaluation, vlm: Any, stage: str, batch_size: int, prompt_limit: int
) -> dict[str, Any]:
    """Answer and score one benchmark; write its record last.

    Returns:
        The record: ``{"benchmark", "protocol_key", "evaluation_key", "stage", "metrics", ...}``
        with metrics named ``<stage>/<benchmark>/<metric>``.
    """
    from msl_ablate.evaluation.benchmark import evaluate_benchmark

    spec = evaluation.spec
    start = time.perf_counter()
    metrics = evaluate_benchmark(
        vlm, spec, evaluation.out_dir, f"{stage}/{spec.name}", batch_size,
        prompt_limit - spec.max_new_tokens,
    )  # fmt: skip
    record = {
        "benchmark": spec.name,
        "scorer": spec.scorer,
        "protocol_key": evaluation.protocol_key,
        "evaluation_key": evaluation.key,
        "stage": stage,
        "metrics": metrics,
        "protocol": evaluation.protocol,
        "wall_s": round(time.perf_counter() - start, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(evaluation.record_path, record)
    return record


def open_evaluation(
    tracker: Tracker, evaluation: Evaluation, stage: str, parent: str, tags: dict[str, str]
) -> str:
    """The evaluation's nested MLflow run, new or its own unfinished one reopened (RUNNING).

    Opened before the benchmark runs, so an evaluation that crashes is closed FAILED with its
    reason, and one whose process is killed is found RUNNING and closed KILLED later.

    Returns:
        The evaluation run's id.
    """
    spec = evaluation.spec
    params = {f"protocol.{k}": v for k, v in flatten(evaluation.protocol).items()}
    run_id, _ = tracker.open(
        EVALUATION,
        evaluation.key,
        f"{spec.name}@{evaluation.protocol_key}",
        {
            **tags,
            "benchmark": spec.name,
            "protocol": evaluation.protocol_key,
            "stage": stage,
            "scorer": str(spec.scorer),
        },  # fmt: skip
        params=params,
        parent=parent,
    )
    return run_id


def close_evaluation(
    tracker: Tracker, run_id: str, evaluation: Evaluation, record: dict[str, Any]
) -> None:
    """Log a finished evaluation's metrics and answer files, and close its run FINISHED."""
    tracker.log_metrics(run_id, record["metrics"])
    tracker.log_artifacts(run_id, evaluation.out_dir)
    tracker.finish(run_id, "FINISHED")
