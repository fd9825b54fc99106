"""How long a stage or an evaluation will take, before it runs (``msl-ablate plan``).

Measured first: every finished stage leaves ``stage.json`` (steps, wall seconds) beside its
``inputs.json``, and every evaluation its ``evaluation.json`` (wall seconds); a stage of the
same *shape* (model, data, trainer, batch and trainability, whatever its seed, step budget or
learning rate) costs what those did per step. Otherwise a FLOPs estimate: 2 FLOPs per parameter
and token forward, 4 more backward through a trained component (2 through a frozen one that
gradients still cross), divided by a stated device speed.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from msl_ablate.config.batching import global_batch, world_size
from msl_ablate.config.enums import Mode
from msl_ablate.evaluation.benchmark import ANSWERS_FILE
from msl_ablate.experiment.layout import (
    EVAL_RECORD,
    STAGE_INPUTS,
    STAGE_RECORD,
    stages_dir,
    trainings_dir,
)
from msl_ablate.models.size import ComponentSize
from msl_ablate.utils.files import read_json, stable_hash

# Stated assumptions of the FLOPs estimate, printed with it.
GPU_PEAK_TFLOPS = 312.0  # A100 bf16 dense; pass --peak-tflops for other devices
GPU_UTILISATION = 0.4  # MFU a tuned LLaVA-style run reaches (Lightning, bf16, FSDP)
CPU_UTILISATION = 0.3  # of this machine's measured matmul speed (small models, fp32)
EVAL_PROMPT_TOKENS = 64  # text tokens of a benchmark prompt besides the image's


@dataclass(frozen=True)
class Estimate:
    """Seconds (None: unknown) and where the number comes from."""

    seconds: float | None
    source: str


@dataclass(frozen=True)
class DeviceSpeed:
    """Sustained FLOP/s of one job (all its devices) and how it was arrived at."""

    flops_per_s: float
    devices: int
    text: str


def _without_run_choices(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's inputs minus what changes its length or numbers but not its cost per step."""
    shape = {k: v for k, v in stage.items()
             if k not in ("max_steps", "warmup_ratio", "optimizer", "scheduler")}  # fmt: skip
    for part in ("vision", "projector", "lm"):
        if isinstance(shape.get(part), dict):
            shape[part] = {k: v for k, v in shape[part].items() if k != "lr"}
    return shape


def stage_shape(inputs: dict[str, Any]) -> str:
    """The cost class of a stage from its key's inputs: seed, budget and learning rates aside."""
    return stable_hash(
        {
            "stage": _without_run_choices(inputs["stage"]),
            "model": inputs["model"],
            "data": inputs["data"],
            "trainer": inputs["trainer"],
        }  # fmt: skip
    )


def model_shape(inputs: dict[str, Any]) -> str:
    """The cost class of evaluating a trained model: its parts and the trainer (device)."""
    return stable_hash({"model": inputs["model"], "trainer": inputs["trainer"]})


@dataclass
class Measurements:
    """Seconds per step by stage shape; evaluation seconds by (model shape, benchmark, protocol)
    and seconds per question by model shape, from the records under one ``output_dir``."""

    step_seconds: dict[str, list[float]]
    eval_seconds: dict[tuple[str, str, str], list[float]]
    question_seconds: dict[str, list[float]]

    @classmethod
    def read(cls, output_dir: str | Path) -> Measurements:
        steps: dict[str, list[float]] = {}
        inputs_of: dict[str, dict[str, Any]] = {}
        for record_path in sorted(stages_dir(output_dir).glob(f"*/{STAGE_RECORD}")):
            inputs_path = record_path.with_name(STAGE_INPUTS)
            try:
                record, inputs = read_json(record_path), read_json(inputs_path)
            except (OSError, json.JSONDecodeError):
                continue  # a stage written by an older version, or one being written
            inputs_of[record_path.parent.name] = inputs
            if record.get("steps") and record.get("wall_s"):
                steps.setdefault(stage_shape(inputs), []).append(record["wall_s"] / record["steps"])
        evals: dict[tuple[str, str, str], list[float]] = {}
        per_question: dict[str, list[float]] = {}
        for record_path in sorted(trainings_dir(output_dir).glob(f"*/evals/*/{EVAL_RECORD}")):
            training_key = record_path.parents[2].name
            try:
                record = read_json(record_path)
            except (OSError, json.JSONDecodeError):
                continue
            if training_key not in inputs_of or not record.get("wall_s"):
                continue
            shape = model_shape(inputs_of[training_key])
            key = (shape, record["benchmark"], record["protocol_key"])
            evals.setdefault(key, []).append(record["wall_s"])
            answers = record_path.with_name(ANSWERS_FILE)
            if answers.is_file():
                with answers.open(encoding="utf-8") as handle:
                    n = sum(1 for line in handle if line.strip())
                if n:
                    per_question.setdefault(shape, []).append(record["wall_s"] / n)
        return cls(steps, evals, per_question)

    def stage(self, inputs: dict[str, Any], steps: int) -> Estimate | None:
        rates = self.step_seconds.get(stage_shape(inputs))
        if not rates:
            return None
        rate = statistics.median(rates)
        return Estimate(
            rate * steps, f"measured {rate:.3g} s/step ({len(rates)} stage(s) of this shape)"
        )

    def evaluation(self, inputs: dict[str, Any], benchmark: str, protocol_key: str,
                   n_questions: int | None) -> Estimate | None:  # fmt: skip
        shape = model_shape(inputs)
        same = self.eval_seconds.get((shape, benchmark, protocol_key))
        if same:
            return Estimate(statistics.median(same), f"measured ({len(same)} run(s))")
        rates = self.question_seconds.get(shape)
        if rates and n_questions:
            rate = statistics.median(rates)
            return Estimate(rate * n_questions, f"measured {rate:.3g} s/question")
        return None


def image_tokens(cfg: DictConfig, vision: ComponentSize) -> int | None:
    """Image tokens the LM reads per image (patches; prefix tokens aside)."""
    if not vision.patch_size:
        return None
    return (int(cfg.vision.image_size) // vision.patch_size) ** 2


def stage_flops(
    cfg: DictConfig, stage_name: str, vision: ComponentSize, lm: ComponentSize
) -> float | None:
    """FLOPs of one stage: every sample at ``data.max_length`` tokens (an upper bound)."""
    n_img = image_tokens(cfg, vision)
    if n_img is None:
        return None
    stage = cfg.strategy.stages[stage_name]
    text = cfg.data.max_length - n_img if cfg.data.max_length else cfg.data.max_text_length
    tokens = n_img + text
    vision_trains = Mode(stage.vision.mode) != Mode.frozen
    lm_trains = Mode(stage.lm.mode) in (Mode.full, Mode.partial)
    # Adapters (LoRA) and a frozen LM still pass gradients back to the projector: 2 FLOPs.
    per_sample = (2 + (4 if vision_trains else 0)) * vision.params * n_img + (
        2 + (4 if lm_trains else 2)
    ) * lm.params * tokens
    return float(per_sample * global_batch(stage, _device_count(cfg)) * stage.max_steps)


def evaluation_flops(
    cfg: DictConfig, n_questions: int, max_new_tokens: int, vision: ComponentSize,
    lm: ComponentSize,
) -> float | None:  # fmt: skip
    """Forward FLOPs of answering ``n_questions`` (generation is latency-bound: a lower bound)."""
    n_img = image_tokens(cfg, vision)
    if n_img is None:
        return None
    tokens = n_img + EVAL_PROMPT_TOKENS + max_new_tokens
    return float(n_questions * (2 * vision.params * n_img + 2 * lm.params * tokens))


def _cpu_matmul_flops(seconds: float = 0.3, n: int = 512) -> float:
    """This machine's fp32 matmul speed with torch's current threads, measured for ``seconds``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def _device_count(cfg: DictConfig) -> int:
    processes = world_size(cfg.trainer)
    # "auto": one device per node, as the estimate states.
    return processes if processes is not None else int(cfg.trainer.num_nodes)


def device_speed(
    cfg: DictConfig, peak_tflops: float | None = None, utilisation: float | None = None
) -> DeviceSpeed:
    """The speed the FLOPs estimate divides by, stated: a GPU's peak x MFU, or this CPU's."""
    devices = _device_count(cfg)
    if str(cfg.trainer.accelerator) in ("gpu", "cuda"):
        peak = (peak_tflops or GPU_PEAK_TFLOPS) * 1e12
        use = utilisation or GPU_UTILISATION
        what = f"{peak / 1e12:g} TFLOP/s peak per GPU"
    else:
        peak = peak_tflops * 1e12 if peak_tflops else _cpu_matmul_flops()
        use = utilisation or CPU_UTILISATION
        what = f"{peak / 1e9:.0f} GFLOP/s ({'given' if peak_tflops else 'matmul measured here'})"
    speed = peak * use * devices
    return DeviceSpeed(
        speed, devices, f"{what} x utilisation {use:g} x {devices} device(s) = "
        f"{speed / 1e12:.3g} TFLOP/s sustained"
    )  # fmt: skip


def flops_estimate(flops: float | None, speed: DeviceSpeed, why_unknown: str) -> Estimate:
    if flops is None:
        return Estimate(None, f"unknown: {why_unknown}")
    return Estimate(flops / speed.flops_per_s, f"FLOPs {flops:.2e}")


class Estimator:
    """Estimates for the stages and evaluations of a sweep's configs (sizes and measurements
    read once per output folder and option)."""

    def __init__(self, speed: DeviceSpeed):
        self.speed = speed
        self._measured: dict[str, Measurements] = {}
        self._sizes: dict[str, ComponentSize | str] = {}

    def _size(self, cfg: DictConfig, part: str) -> ComponentSize | str:
        from omegaconf import OmegaConf

        from msl_ablate.models.size import component_size

        key = stable_hash([OmegaConf.to_container(cfg[part], resolve=True), cfg.offline_twins])
        if key not in self._sizes:
            self._sizes[key] = component_size(
                cfg[part], cfg.offline_twins, cfg.paths.zoo_dir, cfg.zoo.max_steps
            )
        return self._sizes[key]

    def _found(self, cfg: DictConfig) -> Measurements:
        out = str(cfg.paths.output_dir)
        if out not in self._measured:
            self._measured[out] = Measurements.read(out)
        return self._measured[out]

    def _sizes_or_why(self, cfg: DictConfig) -> tuple[ComponentSize, ComponentSize] | str:
        vision, lm = self._size(cfg, "vision"), self._size(cfg, "lm")
        if isinstance(vision, str) or isinstance(lm, str):
            return "; ".join(s for s in (vision, lm) if isinstance(s, str))
        return vision, lm

    def stage(self, cfg: DictConfig, name: str, inputs: dict[str, Any], left: int) -> Estimate:
        """A stage with ``left`` of its ``max_steps`` still to train."""
        if left == 0:
            return Estimate(0.0, "finished")
        measured = self._found(cfg).stage(inputs, left)
        if measured is not None:
            return measured
        sizes = self._sizes_or_why(cfg)
        if isinstance(sizes, str):
            return Estimate(None, f"unknown: {sizes}")
        full = stage_flops(cfg, name, *sizes)
        steps = cfg.strategy.stages[name].max_steps
        flops = None if full is None else full * left / steps
        return flops_estimate(flops, self.speed, "the vision option sets no patch_size")

    def evaluation(self, cfg: DictConfig, inputs: dict[str, Any], evaluation: Any,
                   n_questions: int | None) -> Estimate:  # fmt: skip
        """An evaluation (``experiment.evaluations.Evaluation``) of the model ``inputs`` build."""
        spec = evaluation.spec
        measured = self._found(cfg).evaluation(
            inputs, spec.name, evaluation.protocol_key, n_questions
        )
        if measured is not None:
            return measured
        sizes = self._sizes_or_why(cfg)
        if isinstance(sizes, str):
            return Estimate(None, f"unknown: {sizes}")
        if n_questions is None:
            return Estimate(None, f"unknown: {spec.questions} is not readable here")
        flops = evaluation_flops(cfg, n_questions, spec.max_new_tokens, *sizes)
        return flops_estimate(flops, self.speed, "the vision option sets no patch_size")
