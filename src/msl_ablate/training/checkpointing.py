"""Resume checkpoints of a stage: when to write them, how to write them safely, which one to load.

Lightning's ``ModelCheckpoint`` cannot combine a time trigger with a step trigger (its
``train_time_interval`` and ``every_n_train_steps`` are mutually exclusive), and it keeps one
``last.ckpt``, overwritten by a move from the system temp folder (a copy across devices, not
atomic, not fsynced), so a crash or a full disk during a save can leave nothing to resume
from. Hence this hand-written callback: save every ``every_minutes`` or every ``every_steps`` steps, whichever
comes first, into a temporary file, then rotate ``last.ckpt`` to ``previous.ckpt`` and the new
file to ``last.ckpt``. ``resume_path`` picks the newest of the two that still loads.

The checkpoint also holds the RNG states (dropout, LoRA dropout), so together with the
position-based data order (``data.sampler``) a resumed stage repeats the uninterrupted run.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

LAST = "last.ckpt"
PREVIOUS = "previous.ckpt"
TMP = ".last.ckpt.tmp"  # same name on every rank: Lightning's sharded saves need one path


def _rng_state() -> dict[str, Any]:
    # Tensors and plain tuples only: Lightning loads checkpoints with torch's weights_only.
    mt, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": random.getstate(),
        "numpy": (mt, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    random.setstate(state["python"])
    mt, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((mt, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def _remove(path: Path) -> None:
    if path.is_dir():  # a sharded strategy's checkpoint is a folder
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (Lightning's own write does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _log_step_metrics_now(trainer: L.Trainer) -> None:
    """Send this step's logged metrics to the loggers before the checkpoint is written.

    Lightning logs a step's metrics only after every ``on_train_batch_end`` hook: a process
    killed between the save and that logging would resume after a step whose curve point was
    never written. Lightning sends the same metrics again after this hook; the stage's MLflow
    logger drops that repeat (``StageMLFlowLogger.log_metrics``). This is the logger
    connector's own step logging (a private API: no public hook runs after it).
    """
    trainer._logger_connector.update_train_step_metrics()


class StageCheckpoint(L.Callback):
    """Save a resumable checkpoint every ``every_minutes`` or ``every_steps``, keeping one older.

    A failed write (``OSError``: disk full, quota, lost mount) logs an ERROR and training goes
    on: ``last.ckpt`` and ``previous.ckpt`` are untouched and still resume the stage, while
    stopping would throw away the steps since then too. The next save is tried at the next
    trigger. Other exceptions propagate.

    Under DDP every rank calls ``trainer.save_checkpoint`` with the same path (the strategy
    decides who writes); the time trigger is decided on rank 0 and broadcast, since the ranks'
    clocks differ (one small broadcast per step), the ranks agree on whether the write worked,
    and only global rank 0 rotates the files. Only rank 0's RNG state is saved: every rank
    resumes from it, so with dropout the other ranks' masks may differ from an uninterrupted
    run. Under FSDP (``training/sharding.py``) the checkpoint is gathered on rank 0 the same way.

    Args:
        dirpath: Folder of ``last.ckpt`` and ``previous.ckpt`` (the stage's resume folder).
        every_minutes: Save when this much wall time passed since the last save (or the start
            of ``fit``); None: no time trigger.
        every_steps: Save when ``global_step`` is a multiple of it; None: no step trigger.

    Raises:
        ValueError: Neither trigger is set, or one is not positive.
    """

    def __init__(self, dirpath: Path, every_minutes: float | None, every_steps: int | None):
        if every_minutes is None and every_steps is None:
            raise ValueError("StageCheckpoint needs every_minutes or every_steps; both are None")
        for name, value in (("every_minutes", every_minutes), ("every_steps", every_steps)):
            if value is not None and value <= 0:
                raise ValueError(f"StageCheckpoint {name} must be > 0 or None, got {value}")
        self.dirpath = Path(dirpath)
        self.every_minutes = every_minutes
        self.every_steps = every_steps
        self._last_save = time.monotonic()
        self._seen_step = -1  # the global_step at the last batch end (accumulation repeats it)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if step == self._seen_step:  # no optimizer step since the last batch: nothing new
            return
        self._seen_step = step
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        by_time = False
        if self.every_minutes is not None:
            elapsed = time.monotonic() - self._last_save
            by_time = trainer.strategy.broadcast(elapsed >= 60 * self.every_minutes, src=0)
        if by_steps or by_time:
            _log_step_metrics_now(trainer)
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> bool:
        """Write a checkpoint of the current step and rotate it into ``last.ckpt``.

        Call on every rank.

        Returns:
            Whether the checkpoint was written (the same on every rank).
        """
        step, tmp = trainer.global_step, self.dirpath / TMP
        error: OSError | None = None
        try:
            trainer.save_checkpoint(tmp)
        except OSError as err:
            error = err
            # save_checkpoint ends with a barrier the failing rank skipped; keep ranks in step.
            trainer.strategy.barrier("StageCheckpoint.save failed")
        # Rotate only if every rank wrote its part (DDP: only rank 0 writes).
        ok = trainer.strategy.reduce_boolean_decision(error is None, all=True)
        if trainer.is_global_zero:
            if ok:
                self._rotate(tmp)
            else:
                _remove(tmp)
                reason = f"{type(error).__name__}: {error}" if error else "another rank failed"
                log.error(
                    "Checkpoint of step %d to %s FAILED (%s); training goes on and %s, %s there "
                    "are unchanged (a resume uses them); free space in %s",
                    step, tmp, reason, LAST, PREVIOUS, self.dirpath,
                )  # fmt: skip
        trainer.strategy.barrier("StageCheckpoint.save rotated")
        self._last_save = time.monotonic()
        return ok

    def _rotate(self, tmp: Path) -> None:
        last, previous = self.dirpath / LAST, self.dirpath / PREVIOUS
        if tmp.is_file():
            _fsync(tmp)
        if last.exists():
            if previous.is_dir():  # os.replace overwrites files, not folders
                shutil.rmtree(previous)
            os.replace(last, previous)  # a crash here leaves previous.ckpt and the tmp file
        os.replace(tmp, last)
        _fsync(self.dirpath)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Called while the checkpoint is restored, before the first resumed step draws numbers.
        if "rng" in state_dict:
            _set_rng_state(state_dict["rng"])


def checkpoint_step(path: Path) -> int:
    """Load a checkpoint's structure (tensors memory-mapped, not read) and return its step.

    Raises:
        RuntimeError: The file is truncated or not a torch zip file (or whatever else
            ``torch.load`` raises for a corrupt file).
        KeyError: The file has no ``global_step`` (not a Lightning checkpoint).
    """
    # mmap reads the pickle and the zip's central directory (at the end of the file, so a
    # truncated file fails) without reading the tensor data.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(checkpoint["global_step"])


def resume_path(dirpath: Path) -> Path | None:
    """The newest checkpoint in ``dirpath`` that loads: ``last.ckpt``, else ``previous.ckpt``.

    Args:
        dirpath: The folder ``StageCheckpoint`` writes to.

    Returns:
        The checkpoint to pass as ``ckpt_path``, or None when no file loads (or none exists),
        in which case the stage starts from step 0.
    """
    failures: list[str] = []
    for name in (LAST, PREVIOUS):
        path = Path(dirpath) / name
        if not path.is_file():
            if name == LAST and (Path(dirpath) / PREVIOUS).is_file():
                failures.append(f"{path} is missing (a save was interrupted while rotating)")
            continue
        try:
            step = checkpoint_step(path)
        except Exception as err:  # noqa: BLE001 - any failure to load means this file is unusable
            failures.append(f"{path} does not load ({type(err).__name__}: {err})")
            continue
        if failures:
            log.warning("%s; resuming from %s at step %d instead", "; ".join(failures), path, step)
        else:
            log.debug("Resuming from %s at step %d", path, step)
        return path
    if failures:
        log.warning("%s; no usable checkpoint, the stage starts from step 0", "; ".join(failures))
    return None
