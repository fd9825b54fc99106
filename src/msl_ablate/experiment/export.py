"""``export``: a finished training as a folder other tools load (the llava-hf layout), written
only if it passes the parity gate (``evaluation.export_parity``).

The model is rebuilt from the run's saved config and its stages' weights, exactly as
``evaluate`` rebuilds it; the folder is written into a temporary sibling and renamed into place
after the gate, so a failed or killed export leaves nothing at the destination.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.experiment.keys import training_key
from msl_ablate.experiment.layout import RUN_CONFIG
from msl_ablate.utils.files import build_dir_atomically, write_json_atomic, write_text_atomic
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

FORMATS = ("llava-hf", "mipha")
EXPORT_RECORD = "msl_ablate_export.json"  # provenance and the gate's measurements


def trained_model(cfg: DictConfig) -> Any:
    """The run's model at the end of its strategy: built, then every stage's weights loaded.

    Raises:
        FileNotFoundError: A stage of the run is not finished.
    """
    import torch

    from msl_ablate.experiment.keys import keys_of, stage_inputs
    from msl_ablate.experiment.stages import run_stages
    from msl_ablate.models.assemble import build_vlm, max_sequence_length

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    vlm = build_vlm(cfg)
    inputs = stage_inputs(cfg)
    vlm, _ = run_stages(
        cfg, vlm, keys_of(inputs), inputs, max_sequence_length(cfg, vlm), train=False
    )
    return vlm.eval()


def export_run(cfg: DictConfig, out: Path, fmt: str = "llava-hf") -> dict[str, Any]:
    """Write the run of ``cfg`` to ``out`` in ``fmt`` and gate it.

    Args:
        cfg: The run's saved config (``experiment.runs.load_run_config``).
        out: The folder to create; it must not exist or be empty.
        fmt: One of ``FORMATS``.

    Returns:
        The record written to ``out/msl_ablate_export.json``: the training, the format and the
        parity report.

    Raises:
        FileExistsError: ``out`` exists and is not empty.
        ValueError: The model has no counterpart in ``fmt`` (the reason named).
        evaluation.export_parity.ParityError: The folder and the harness disagree.
    """
    from hydra.utils import get_class

    from msl_ablate.evaluation.export_parity import check_export, check_mipha
    from msl_ablate.models.assemble import resolved_checkpoints
    from msl_ablate.models.llava_hf import export_problem, save_llava_hf
    from msl_ablate.models.mipha_layout import mipha_problem, save_mipha

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; export writes a new folder")
    key = training_key(cfg)
    # float32 whatever lm.torch_dtype trained in: bfloat16 weights upcast exactly, and the gate
    # then compares one computation of one model (precision is the loading tool's choice).
    vlm = trained_model(cfg).float()
    problem, save, check = {
        "llava-hf": (export_problem, save_llava_hf, check_export),
        "mipha": (mipha_problem, save_mipha, check_mipha),
    }[fmt]
    reason = problem(vlm)
    if reason is not None:
        raise ValueError(f"training {key} cannot be exported to the {fmt} layout: {reason}")
    tower = get_class(cfg.vision.model_class).from_pretrained(resolved_checkpoints(cfg)["vision"])
    record: dict[str, Any] = {}

    def build(folder: Path) -> None:
        save(vlm, tower, folder)
        log.info("Checking %s against the harness on the parity probes", folder)
        record.update(
            format=fmt,
            training_key=key,
            model={g: cfg[g].name for g in ("vision", "projector", "lm", "strategy")},
            parity=check(vlm, folder),
            exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        write_json_atomic(folder / EXPORT_RECORD, record)
        write_text_atomic(folder / f"msl_ablate_{RUN_CONFIG}", OmegaConf.to_yaml(cfg, resolve=True))

    if out.exists():
        out.rmdir()  # empty: replaced by the finished folder
    build_dir_atomically(out, build)
    return record
