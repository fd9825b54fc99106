"""``import``: a released checkpoint as a finished training of the stage graph, so that
``msl-ablate evaluate`` benchmarks it under the same protocols as the study's own runs (MLflow
runs, store rows, report).

The release is read into the harness's parts (``models/released.py``); the tower and the LM are
written as folders under ``<outputs>/released/<name>/`` that the options ``vision=released`` and
``lm=released`` load; the projector's weights become the one finished stage of
``strategy=released``; the run's ``config.yaml`` is written as ``train`` writes it. A
llava-hf release is then checked: the harness's inputs through the release's own
``LlavaForConditionalGeneration`` give the harness's logits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.experiment.checks import check
from msl_ablate.experiment.keys import keys_of, stage_inputs
from msl_ablate.experiment.layout import StageLayout, TrainingLayout, released_dir
from msl_ablate.utils.files import build_dir_atomically, write_json_atomic, write_text_atomic
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

STAGE = "finetune"  # the one stage of conf/strategy/released.yaml


def released_config(released: Any, name: str, root: Path, overrides: list[str]) -> DictConfig:
    """The run config of an imported release: its parts as ``released`` options.

    Args:
        released: The ``ReleasedModel``.
        name: Its name (the axis value of its rows).
        root: Where its tower and LM folders are.
        overrides: ``paths.*`` and ``tracking.*`` of the command line.
    """
    lm = released.lm
    params_b = sum(p.numel() for p in lm.parameters()) / 1e9
    cfg = compose([
        "vision=released", f"vision.name={name}", f"vision.checkpoint='{root / 'vision'}'",
        f"vision.image_size={released.image_size}", f"vision.feature_layer={released.feature_layer}",
        f"vision.drop_cls={str(released.drop_cls).lower()}", f"vision.resize={released.resize.value}",
        "lm=released", f"lm.name={name}", f"lm.checkpoint='{root / 'lm'}'",
        f"lm.family={lm.config.model_type}", f"lm.params_b={params_b:.4f}",
        f"projector={released.projector}", "strategy=released", "offline_twins=false",
        "study=released", *overrides,
    ])  # fmt: skip
    absolutize_paths(cfg)
    check(cfg)
    return cfg


def import_release(source: Path, layout: str, name: str, overrides: list[str]) -> dict[str, Any]:
    """Import the release at ``source`` as training ``<key>`` named ``name``.

    Args:
        source: The release's folder.
        layout: ``llava-hf`` or ``mipha`` (``config.enums.RELEASE_LAYOUTS``).
        name: The name its rows carry (vision and LM option names).
        overrides: ``paths.*``, ``tracking.*``.

    Returns:
        ``{"training_key", "root", "parity"}``; ``parity``: probe -> largest logit difference
        against the release's own model (llava-hf), or None.

    Raises:
        FileExistsError: A release of that name was imported already.
        ValueError, FileNotFoundError: A folder that is not such a release (named).
        evaluation.export_parity.ParityError: The harness computes other logits than the
            release's own model.
    """
    import torch

    from msl_ablate.models.assemble import build_vlm
    from msl_ablate.models.released import read_released, save_released
    from msl_ablate.training.strategy import apply_stage, save_trainable

    current = compose(overrides)
    absolutize_paths(current)
    root = released_dir(current.paths.output_dir, name)
    if root.exists():
        raise FileExistsError(f"{root} exists: a release named {name!r} was imported already "
                              "(another --name, or delete that folder to import it again)")  # fmt: skip
    released = read_released(source, layout)
    log.info("Writing the tower and the LM of %s (%s) to %s", source, layout, root)
    build_dir_atomically(root, lambda tmp: save_released(released, tmp) and None)
    cfg = released_config(released, name, root, overrides)
    vlm = build_vlm(cfg)
    vlm.projector.load_state_dict(released.projector_state)
    parity = None
    if layout == "llava-hf":
        from transformers import LlavaForConditionalGeneration

        from msl_ablate.evaluation.export_parity import check_logits

        own = LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32).eval()
        parity = check_logits(vlm, own)
    inputs = stage_inputs(cfg)
    key = keys_of(inputs)[STAGE]
    stage = StageLayout.of(cfg.paths.output_dir, key)
    apply_stage(vlm, cfg.strategy.stages[STAGE])
    with hold(stage.lock, f"stage {STAGE} {key}"):
        write_json_atomic(stage.inputs, inputs[STAGE])
        save_trainable(vlm, stage.weights)
        write_json_atomic(stage.record, {
            "stage": STAGE, "stage_key": key, "imported_from": str(source), "layout": layout,
            "steps": 0, "tracking_uri": None, "mlflow_run_id": None,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })  # fmt: skip
    training = TrainingLayout.of(cfg.paths.output_dir, key)
    write_text_atomic(training.config, OmegaConf.to_yaml(cfg, resolve=True))
    return {"training_key": key, "root": root, "parity": parity}
