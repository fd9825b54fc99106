"""Content keys of the stage graph: stages, trainings and evaluations.

A **stage key** hashes everything a stage's result depends on: its own settings, the model
parts it sees (with the weights they start from), its data, the seed, the trainer's numerics
and the previous stage's key. Never evaluation settings, tracking, paths, logging or the
checkpoint cadence (a resume continues exactly, so when a stage was saved does not matter).
Two runs whose stage keys are equal share that stage's artifacts.

A **training key** is the last stage's key. An **evaluation key** is (training key, benchmark,
protocol); the protocol fingerprint covers the benchmark files' contents, the prompt suffix
and layout, decoding, ``max_new_tokens``, the batch size and the prompt budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.components import VISION_SIZE_KEYS, components
from msl_ablate.utils.files import file_digest, stable_hash

KEY_LENGTH = 12
PROTOCOL_LENGTH = 8
# Greedy decoding is the only decoding the harness does (evaluation/generate.py).
DECODING = {"do_sample": False, "num_beams": 1}
# Trainer settings that only change what is shown, not what is computed.
DISPLAY_ONLY_TRAINER_KEYS = ("log_every_n_steps", "enable_progress_bar", "enable_model_summary")
# Options that enter a key only when set: at their default they compute what the stages made
# before the options existed, whose keys must not change (a compiled LM or another attention
# kernel rounds differently, so they count when set).
KEYED_WHEN_SET = {"compile": False, "attn_implementation": None, "fused": None,
                  "group_by_modality": False}  # fmt: skip
DATA_KEYED_WHEN_SET = {"image_dirs": {}, "on_error": "error", "too_long": "error"}
# Stage options that change memory and time, never the result (activations recomputed).
RESOURCE_ONLY_STAGE_KEYS = ("gradient_checkpointing",)


def _drop_defaults(
    spec: dict[str, Any], defaults: dict[str, Any] = KEYED_WHEN_SET
) -> dict[str, Any]:
    """``spec`` (and its ``optimizer`` node) without the options at their ``defaults``."""
    for node in (spec, spec.get("optimizer") or {}):
        for key, default in defaults.items():
            if key in node and node[key] == default:
                del node[key]
    return spec


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def model_inputs(cfg: DictConfig) -> dict[str, Any]:
    """The three model parts as a stage sees them, each with the weights it starts from.

    A component whose tiny twin is the model (``offline_twins`` or ``checkpoint: null``) keeps
    its twin recipe (as capped by ``zoo.max_steps``), the zoo tokenizer's recipe and the world
    version; a real checkpoint is named by its id alone.
    """
    from msl_ablate.models.vision.base import TOWER_LAYOUT
    from msl_ablate.models.zoo import capped, zoo_inputs

    parts = {name: _container(cfg[name]) for name in ("vision", "lm", "projector")}
    uses_twin = False
    for _, spec in components(parts["vision"], "vision"):
        for key in VISION_SIZE_KEYS:
            spec.pop(key, None)
        spec["tower"] = TOWER_LAYOUT
    for _, spec in [*components(parts["vision"], "vision"), *components(parts["lm"], "lm")]:
        _drop_defaults(spec)
        spec.pop("shard_blocks", None)  # how FSDP splits the model, not what it computes
        if cfg.offline_twins or spec["checkpoint"] is None:
            spec["weights"], uses_twin = "twin", True
            if isinstance(spec.get("twin"), dict):
                spec["twin"] = capped(spec["twin"], cfg.zoo.max_steps)
        else:
            spec["weights"] = "checkpoint"
            spec.pop("twin", None)
    if uses_twin:
        parts["zoo"] = zoo_inputs()
    return parts


def data_inputs(cfg: DictConfig, split: str) -> dict[str, Any]:
    """What a stage's data is: the generator's recipe and the world's version, or the split
    file's content hash."""
    from msl_ablate.data.world import WORLD_VERSION

    data = _container(cfg.data)
    data.pop("num_workers", None)
    data.pop("token_cache", None)  # the same tokens, from disk or tokenized on the fly
    _drop_defaults(data, DATA_KEYED_WHEN_SET)  # options newer than the keys made
    for key in ("max_gb", "dir"):  # where features are kept, not what they are
        data.get("feature_cache", {}).pop(key, None)
    if data.get("generator") is not None:
        data["world"] = WORLD_VERSION  # the same recipe draws other scenes in another world
    else:
        root = Path(data.pop("root")).expanduser()
        data["split_sha256"] = file_digest(root / data["files"][split])
    return data


def trainer_inputs(cfg: DictConfig) -> dict[str, Any]:
    trainer = _container(cfg.trainer)
    for key in DISPLAY_ONLY_TRAINER_KEYS:
        trainer.pop(key, None)
    return trainer


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``{stage: what its key hashes}``, in strategy order (also saved beside the artifact)."""
    model, trainer = model_inputs(cfg), trainer_inputs(cfg)
    out: dict[str, dict[str, Any]] = {}
    previous = None
    for name, stage in cfg.strategy.stages.items():
        spec = _drop_defaults(_container(stage))
        for key in RESOURCE_ONLY_STAGE_KEYS:
            spec.pop(key, None)
        inputs = {
            "stage": spec,
            "model": model,
            "data": data_inputs(cfg, stage.split),
            "seed": cfg.seed,
            "trainer": trainer,
            "previous": previous,
        }
        out[name] = inputs
        previous = _key(inputs)
    return out


def _key(values: Any) -> str:
    return stable_hash(values, KEY_LENGTH)


def keys_of(inputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{stage: key}`` from ``stage_inputs``' result."""
    return {name: _key(values) for name, values in inputs.items()}


def stage_keys(cfg: DictConfig) -> dict[str, str]:
    """``{stage: key}`` in strategy order."""
    return keys_of(stage_inputs(cfg))


def training_key(cfg: DictConfig) -> str:
    """The key of a trained model: its last stage's key."""
    return list(stage_keys(cfg).values())[-1]


def protocol_inputs(spec: Any, cfg: DictConfig) -> dict[str, Any]:
    """What a benchmark's answers and score depend on besides the model.

    Args:
        spec: An ``evaluation.benchmark.BenchmarkSpec``.
        cfg: The root config (``eval.batch_size``, ``eval.max_length``).
    """
    options = {k: file_digest(v) if isinstance(v, Path) else v for k, v in spec.options.items()}
    # Only when set: protocols made before the option existed keep their keys.
    repeated = {"repeated_ids": True} if spec.repeated_ids else {}
    return {
        **repeated,
        "scorer": spec.scorer,
        "questions_sha256": file_digest(spec.questions),
        "annotations_sha256": None if spec.annotations is None else file_digest(spec.annotations),
        "format": str(spec.format.value),
        "prompt_suffix": spec.prompt_suffix,
        "max_new_tokens": spec.max_new_tokens,
        "max_questions": spec.max_questions,
        "options": options,
        "export": spec.export,
        "decoding": DECODING,
        "batch_size": cfg.eval.batch_size,  # batching changes answers (lmms-eval #236)
        "max_length": cfg.eval.max_length,
    }


def protocol_key(protocol: dict[str, Any]) -> str:
    """The fingerprint of ``protocol_inputs``' result."""
    return stable_hash(protocol, PROTOCOL_LENGTH)


def evaluation_key(training: str, benchmark: str, protocol: str) -> str:
    return _key({"training": training, "benchmark": benchmark, "protocol": protocol})
