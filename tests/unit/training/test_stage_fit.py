"""A stage's fit: exact resume, safe checkpoint rotation, non-finite losses, the cadence config."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import mlflow
import pytest
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.io import torch_io
from omegaconf import DictConfig

from msl_ablate.config.checks import check_config
from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root
from msl_ablate.data.sampler import TRAINER_KWARGS, record_at
from msl_ablate.models.assemble import build_vlm, max_sequence_length
from msl_ablate.tracking.mlflow_run import StageMLFlowLogger
from msl_ablate.training.checkpointing import LAST, PREVIOUS, StageCheckpoint, resume_path
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.strategy import apply_stage
from msl_ablate.utils.errors import ConfigError, NonFiniteLossError

STAGE = "finetune"  # trains the projector and the whole LM (AdamW state for both)
# 32 instructions in batches of 8: 4 steps per pass, so 6 steps cross a pass boundary.
OVERRIDES = (f"strategy.stages.{STAGE}.max_steps=6", f"strategy.stages.{STAGE}.batch_size=8")


class Interrupted(Exception):
    """A crash in the middle of a stage."""


class StopAt(L.Callback):
    """Crash once ``global_step`` reaches ``step`` (after that step's checkpoint, if any)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            raise Interrupted(f"stopped at step {trainer.global_step}")


class LossLog(L.Callback):
    """``losses[step]``: the loss of the batch that led to optimizer step ``step`` (1-based)."""

    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = outputs["loss"].item()


def _datamodule(cfg: DictConfig, vlm, stage: DictConfig, grouped: bool | None = None):
    return VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), stage.split,
        vlm.lm.tokenizer, vlm.vision.image_transform, vlm.num_image_tokens,
        max_sequence_length(cfg, vlm), stage.batch_size, seed=cfg.seed,
        group_by_length=stage.group_by_length if grouped is None else grouped,
    )  # fmt: skip


def _fit(
    cfg: DictConfig, ckpt_dir: Path, *callbacks: L.Callback, ckpt_path=None, logger=False
) -> VLMLitModule:
    """Build the model from the seed, as a new process would, and fit one stage."""
    L.seed_everything(cfg.seed)
    vlm = build_vlm(cfg)
    stage = cfg.strategy.stages[STAGE]
    module = VLMLitModule(vlm, apply_stage(vlm, stage), stage)
    trainer: L.Trainer = instantiate(
        cfg.trainer, max_steps=stage.max_steps, logger=logger, enable_checkpointing=False,
        callbacks=[StageCheckpoint(ckpt_dir, None, every_steps=2), *callbacks],
        default_root_dir=ckpt_dir.parent, **TRAINER_KWARGS,
    )  # fmt: skip
    trainer.fit(module, datamodule=_datamodule(cfg, vlm, stage), ckpt_path=ckpt_path)
    return module


def _trainable(module: VLMLitModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.vlm.named_parameters() if p.requires_grad}


def _step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def _straight(cfg: DictConfig, ckpt_dir: Path) -> tuple[dict[int, float], dict[str, torch.Tensor]]:
    """Six uninterrupted steps: the per-step losses and the final trainable weights."""
    log = LossLog()
    module = _fit(cfg, ckpt_dir, log)
    return log.losses, _trainable(module)


@pytest.fixture
def straight_dir(make_cfg, tmp_path) -> Path:
    """The checkpoints of six uninterrupted steps: last.ckpt (step 6), previous.ckpt (step 4)."""
    _straight(make_cfg(*OVERRIDES), tmp_path / "straight")
    return tmp_path / "straight"


def _padding(batches: list[dict[str, torch.Tensor]]) -> float:
    mask = torch.cat([b["attention_mask"].flatten() for b in batches])
    return 1 - mask.sum().item() / mask.numel()


@pytest.mark.parametrize("grouped", [False, True])
def test_the_loader_serves_the_stream_without_a_trainer(make_cfg, grouped):
    cfg = make_cfg(*OVERRIDES, f"strategy.stages.{STAGE}.batch_size=4")
    vlm = build_vlm(cfg)
    datamodule = _datamodule(cfg, vlm, cfg.strategy.stages[STAGE], grouped)
    datamodule.setup("fit")
    loader, data = datamodule.train_dataloader(), datamodule.train_set
    batches = list(loader)
    assert len(loader) == len(batches) == 8  # one pass of 32 records in full batches of 4
    lengths = data.lengths() if grouped else None
    for step, batch in enumerate(batches):
        indices = [record_at(cfg.seed, 4 * step + i, len(data), lengths, 4) for i in range(4)]
        expected = loader.collate_fn([data[i] for i in indices])
        assert torch.equal(batch["input_ids"], expected["input_ids"])
    if grouped:  # the same records, in steps of similar length: less padding
        plain = _datamodule(cfg, vlm, cfg.strategy.stages[STAGE], False)
        plain.setup("fit")
        assert _padding(batches) < 0.6 * _padding(list(plain.train_dataloader()))


def test_each_rank_loads_its_slice_from_the_trainer_step(make_cfg):
    cfg = make_cfg(*OVERRIDES, f"strategy.stages.{STAGE}.group_by_length=true")
    vlm = build_vlm(cfg)

    def loader(rank: int, use_distributed_sampler: bool = False):
        trainer = SimpleNamespace(
            global_rank=rank, world_size=2, global_step=3, accumulate_grad_batches=1,
            _accelerator_connector=SimpleNamespace(use_distributed_sampler=use_distributed_sampler),
            strategy=SimpleNamespace(root_device=torch.device("cpu")),
        )  # fmt: skip
        datamodule = _datamodule(cfg, vlm, cfg.strategy.stages[STAGE])
        datamodule.trainer = trainer
        datamodule.setup("fit")
        return datamodule.train_dataloader()

    with pytest.raises(RuntimeError, match="build the Trainer with {'use_distributed_sampler'"):
        loader(0, use_distributed_sampler=True)
    data = loader(0).dataset
    for rank in (0, 1):  # step 3 of 2 x 8 samples: positions 48..63, rank 1 takes 56..63
        (batch, *_) = loader(rank)
        first = 48 + 8 * rank
        expected = [data[record_at(cfg.seed, p, len(data), data.lengths(), 16)]
                    for p in range(first, first + 8)]  # fmt: skip
        assert torch.equal(batch["input_ids"], loader(rank).collate_fn(expected)["input_ids"])


# Full fine-tuning, and LoRA, whose dropout needs the RNG state restored too.
@pytest.mark.parametrize("strategy", ["align_then_finetune", "vfrozen_lmlora"])
def test_a_resumed_stage_repeats_the_uninterrupted_run_exactly(make_cfg, tmp_path, strategy):
    cfg = make_cfg(*OVERRIDES, f"strategy={strategy}")
    losses, weights = _straight(cfg, tmp_path / "straight")
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    last, previous = tmp_path / "straight" / LAST, tmp_path / "straight" / PREVIOUS
    assert (_step(last), _step(previous)) == (6, 4)

    ckpt_dir = tmp_path / "resumed"
    crashed = LossLog()
    with pytest.raises(Interrupted, match="stopped at step 3"):
        _fit(cfg, ckpt_dir, crashed, StopAt(3))
    assert crashed.losses == {k: losses[k] for k in (1, 2, 3)}
    path = resume_path(ckpt_dir)
    assert path == ckpt_dir / LAST and _step(path) == 2  # step 3 was never saved

    resumed = LossLog()
    module = _fit(cfg, ckpt_dir, resumed, ckpt_path=path)
    # Steps 3..6 again, across the pass boundary after step 4: same batches, same numbers.
    assert resumed.losses == {k: losses[k] for k in (3, 4, 5, 6)}
    final = _trainable(module)
    assert final.keys() == weights.keys()
    assert all(torch.equal(final[n], weights[n]) for n in weights)


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(straight_dir, caplog):
    ckpt_dir = straight_dir
    last = ckpt_dir / LAST
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="msl_ablate.training.checkpointing"):
        assert resume_path(ckpt_dir) == ckpt_dir / PREVIOUS
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert str(last) in message and "does not load" in message and "at step 4" in message

    (ckpt_dir / PREVIOUS).write_bytes(b"not a checkpoint")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="msl_ablate.training.checkpointing"):
        assert resume_path(ckpt_dir) is None
    assert "no usable checkpoint, the stage starts from step 0" in caplog.text
    assert resume_path(ckpt_dir / "missing") is None


def test_a_failed_write_keeps_both_checkpoints_and_training_goes_on(
    make_cfg, straight_dir, monkeypatch, caplog
):
    ckpt_dir = straight_dir
    before = {name: (ckpt_dir / name).read_bytes() for name in (LAST, PREVIOUS)}

    def disk_full(checkpoint: dict, filepath) -> None:
        Path(filepath).write_bytes(b"PK\x03\x04 half a checkpoint")  # written, then no space
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch_io, "_atomic_save", disk_full)
    cfg = make_cfg(*OVERRIDES, f"strategy.stages.{STAGE}.max_steps=2")
    log = LossLog()
    with caplog.at_level(logging.ERROR, logger="msl_ablate.training.checkpointing"):
        _fit(cfg, ckpt_dir, log)  # saves at step 2 and fails
    assert sorted(log.losses) == [1, 2]  # the failure did not stop training
    assert "Checkpoint of step 2" in caplog.text and "No space left on device" in caplog.text
    assert {name: (ckpt_dir / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [LAST, PREVIOUS]  # no temp file left
    assert resume_path(ckpt_dir) == ckpt_dir / LAST and _step(ckpt_dir / PREVIOUS) == 4


def test_a_nan_loss_stops_before_the_optimizer_step(make_cfg, tmp_path, monkeypatch):
    forward = VLMLitModule.training_step
    seen = []

    def nan_at_step_3(self, batch, batch_idx):
        if self.global_step == 3:  # poison the projector's output: the loss becomes NaN
            with torch.no_grad():
                next(self.vlm.projector.parameters()).fill_(float("nan"))
        seen.append(self.global_step)
        return forward(self, batch, batch_idx)

    monkeypatch.setattr(VLMLitModule, "training_step", nan_at_step_3)
    with pytest.raises(
        NonFiniteLossError, match=r"stage finetune: loss is nan at step 3 \("
    ) as err:
        _fit(make_cfg(*OVERRIDES), tmp_path / "nan")
    assert (err.value.stage, err.value.step, str(err.value.value)) == ("finetune", 3, "nan")
    assert isinstance(err.value, RuntimeError) and seen == [0, 1, 2, 3]


def test_a_checkpointed_step_is_logged_before_a_kill_and_every_step_once(make_cfg, tmp_path):
    # Lightning logs a step after its on_train_batch_end hooks: a kill just after the save
    # (StopAt runs after StageCheckpoint) must still find the saved step's loss in MLflow.
    cfg = make_cfg(*OVERRIDES)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    curves = {}
    for name, stop in (("killed", [StopAt(4)]), ("straight", [])):
        run_id = client.create_run(client.create_experiment(name)).info.run_id
        logger = StageMLFlowLogger(tracking_uri=uri, run_id=run_id, log_model=False, prefix=STAGE)
        try:
            _fit(cfg, tmp_path / name, *stop, logger=logger)
        except Interrupted:
            assert _step(tmp_path / name / LAST) == 4
        history = client.get_metric_history(run_id, f"{STAGE}/train/loss")
        curves[name] = [m.step for m in history]
    # Lightning numbers logged steps from 0: the checkpoint of global step 4 holds step 3.
    assert sorted(curves["killed"]) == [0, 1, 2, 3]
    assert sorted(curves["straight"]) == [0, 1, 2, 3, 4, 5]  # one point per step, none twice


def test_the_checkpoint_cadence_is_checked(make_cfg):
    check_config(make_cfg("checkpoint.every_minutes=null", "checkpoint.every_steps=100"))
    with pytest.raises(ConfigError) as err:
        check_config(make_cfg("checkpoint.every_minutes=null"))
    assert err.value.problems == [
        "checkpoint.every_minutes and checkpoint.every_steps are both null; set at least one "
        "(conf/train.yaml), or an interrupted stage cannot resume"
    ]
    with pytest.raises(ConfigError) as err:
        check_config(make_cfg("checkpoint.every_minutes=0", "checkpoint.every_steps=-5"))
    assert err.value.problems == [
        "checkpoint.every_minutes must be > 0 or null, got 0.0",
        "checkpoint.every_steps must be > 0 or null, got -5",
    ]
    with pytest.raises(ValueError, match="needs every_minutes or every_steps; both are None"):
        StageCheckpoint(Path("."), None, None)


def test_a_text_only_batch_still_steps_when_only_the_projector_trains(make_cfg, tmp_path):
    from msl_ablate.data.collate import VLMCollator

    cfg = make_cfg("strategy=vfrozen_lmfrozen", f"strategy.stages.{STAGE}.max_steps=2")
    vlm = build_vlm(cfg)
    stage = cfg.strategy.stages[STAGE]
    module = VLMLitModule(vlm, apply_stage(vlm, stage), stage)
    ids = vlm.lm.tokenizer("a text-only turn", return_tensors="pt").input_ids[0]
    samples = [{"id": str(i), "input_ids": ids, "labels": ids} for i in range(4)]  # no image
    loader = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=VLMCollator(
        vlm.lm.tokenizer.pad_token_id))  # fmt: skip
    before = {n: p.detach().clone() for n, p in vlm.projector.named_parameters()}
    trainer: L.Trainer = instantiate(cfg.trainer, max_steps=2, logger=False,
                                     enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2  # one batch per step, as the data stream counts them
    # Zero gradients: only the optimizer's own update (AdamW's from no signal is zero).
    assert all(torch.equal(p, before[n]) for n, p in vlm.projector.named_parameters())


def test_a_step_in_parts_is_the_step_of_the_whole_batch(make_cfg, tmp_path, monkeypatch):
    # Split even where a part saves little padding (the tiny batches have little).
    monkeypatch.setattr("msl_ablate.training.micro_batches.PART_COST", 0.0)
    runs = {}
    for parts in (1, 3):
        log = LossLog()
        cfg = make_cfg(*OVERRIDES, f"strategy.stages.{STAGE}.max_steps=3",
                       f"strategy.stages.{STAGE}.split_by_length={parts}")  # fmt: skip
        module = _fit(cfg, tmp_path / str(parts), log)
        padding = module.trainer.callback_metrics["train/padding"].item()
        runs[parts] = (log.losses, _trainable(module), padding)
    (losses, weights, padding), (split_losses, split_weights, split_padding) = runs[1], runs[3]
    assert list(split_losses) == [1, 2, 3]
    assert split_losses == pytest.approx(losses, rel=1e-5)
    for name, value in weights.items():
        assert torch.allclose(split_weights[name], value, atol=1e-5), name
    assert split_padding < padding


def test_a_global_batch_of_two_device_batches_is_one_step_of_both(make_cfg, tmp_path, monkeypatch):
    from msl_ablate.experiment.layout import StageLayout
    from msl_ablate.experiment.stages import fit_stage

    weights, start, ft, batches = {}, {}, f"strategy.stages.{STAGE}", []
    step = VLMLitModule.training_step
    monkeypatch.setattr(VLMLitModule, "training_step",
                        lambda self, batch, i: batches.append(len(batch["ids"])) or step(self, batch, i))  # fmt: skip
    # Batches of 4 accumulated to 8 per step, steps of 8, and steps of 4 (half the samples).
    variants = {"accumulated": [f"{ft}.batch_size=4", f"{ft}.global_batch_size=8"],
                "whole": [], "half": [f"{ft}.batch_size=4"]}  # fmt: skip
    for name, overrides in variants.items():
        cfg = make_cfg(*OVERRIDES, f"{ft}.max_steps=3", f"{ft}.lm.lr=1e-3",
                       f"{ft}.projector.lr=1e-3", *overrides)  # fmt: skip
        L.seed_everything(cfg.seed)
        vlm = build_vlm(cfg)
        stage = cfg.strategy.stages[STAGE]
        groups = apply_stage(vlm, stage)
        start = {n: p.detach().clone() for n, p in vlm.named_parameters() if p.requires_grad}
        layout = StageLayout.of(tmp_path / name, "stage")
        batches.clear()
        fit = fit_stage(cfg, vlm, stage, groups, layout, max_sequence_length(cfg, vlm), False)
        assert fit["steps"] == 3
        assert batches == {"accumulated": [4] * 6, "whole": [8] * 3, "half": [4] * 3}[name]
        weights[name] = {n: p.detach().clone() for n, p in vlm.named_parameters()
                         if p.requires_grad}  # fmt: skip

    def distance(a: str, b: str | None = None) -> float:
        other = start if b is None else weights[b]
        return sum((weights[a][n] - other[n]).abs().sum().item() for n in other)

    # The same samples per step: close to the whole batch's steps (each half batch is a
    # token-mean of its own, so not equal; measured 0.3% of the distance moved); steps of 4
    # samples are far from both (measured 100x farther).
    assert distance("accumulated", "whole") < 0.01 * distance("whole")
    assert distance("accumulated", "whole") < 0.05 * distance("half", "whole")


@pytest.mark.parametrize(
    ("option", "tolerance"),
    [("gradient_checkpointing", 1e-6),  # the same math, activations recomputed
     pytest.param("compile", 1e-4, marks=pytest.mark.slow)],  # other kernels: rounding
)  # fmt: skip
def test_a_resource_option_trains_the_same_steps(make_cfg, tmp_path, option, tolerance):
    # The tower trains too (vfull_lmfull), so both transformers models are checkpointed.
    overrides = (*OVERRIDES, "strategy=vfull_lmfull", f"strategy.stages.{STAGE}.max_steps=3")
    runs = {}
    for on in (False, True):
        log = LossLog()
        cfg = make_cfg(*overrides, f"strategy.stages.{STAGE}.{option}={str(on).lower()}")
        module = _fit(cfg, tmp_path / str(on), log)
        runs[on] = (log.losses, _trainable(module))
        # Undone when the stage ends: the next stage and evaluation choose for themselves.
        assert not module.vlm.lm.model.is_gradient_checkpointing
        assert module.vlm.lm.model._compiled_call_impl is None
    (losses, weights), (other_losses, other_weights) = runs[False], runs[True]
    assert other_losses == pytest.approx(losses, rel=tolerance)
    for name, value in weights.items():
        torch.testing.assert_close(other_weights[name], value, rtol=0, atol=tolerance)


def test_gradient_checkpointing_recomputes_the_lm_and_a_trained_tower(make_cfg, tmp_path):
    calls = []
    cfg = make_cfg(*OVERRIDES, "strategy=vfull_lmfull", f"strategy.stages.{STAGE}.max_steps=1",
                   f"strategy.stages.{STAGE}.gradient_checkpointing=true")  # fmt: skip

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            vlm = pl_module.vlm
            calls.append((vlm.lm.model.is_gradient_checkpointing,
                          vlm.vision.model.is_gradient_checkpointing))  # fmt: skip

    _fit(cfg, tmp_path / "ckpt", Spy())
    assert calls == [(True, True)]
