"""Rank-zero logging: one logger per module, silent on non-zero ranks."""

from __future__ import annotations

import logging
import os

_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"


def _rank() -> int:
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def is_rank_zero() -> bool:
    """Whether this process is rank zero (or not distributed): the one that logs and shows bars."""
    return _rank() == 0


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return is_rank_zero()


def get_logger(name: str) -> logging.Logger:
    """Return a logger that only emits on rank zero.

    Args:
        name: Usually ``__name__``.

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RankZeroFilter) for f in logger.filters):
        logger.addFilter(_RankZeroFilter())
    return logger


def setup_console_logging() -> None:
    """INFO logs to stderr for commands that do not run under Hydra (which sets up its own)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=_FORMAT, datefmt="%H:%M:%S")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def route_library_logs(
    names: tuple[str, ...] = ("lightning", "lightning.pytorch", "lightning.fabric"),
) -> None:
    """Send Lightning's logs through the root handlers (Hydra's console and file) only once.

    Lightning attaches its own console handler at import; under Hydra every line then
    appears twice. Its advertising tips are dropped.
    """
    if not logging.getLogger().handlers:
        return
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropTips) for f in handler.filters):
            handler.addFilter(_DropTips())
