"""Inter-process locks on lock files (``filelock``: ``flock`` on POSIX, freed when a process dies).

A process killed with SIGKILL releases its locks with it, so a lock that can be taken means no
live process is working on what it guards: that is how a RUNNING MLflow run whose process is
gone is told from a live one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from msl_ablate.utils.logging import get_logger, is_rank_zero

log = get_logger(__name__)


@contextlib.contextmanager
def hold(path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock at ``path``, waiting (and saying so) while another process holds it.

    Under DDP only rank zero locks: the other ranks follow it through the same stages (a rank
    waiting on rank zero's lock would never join its process group).

    Args:
        path: The lock file (created with its folder).
        what: What the lock guards, for the waiting message, e.g. ``stage align 1a2b...``.
    """
    if not is_rank_zero():
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("Waiting for %s: another process holds %s", what, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def is_held(path: str | Path) -> bool:
    """Whether another process holds the lock at ``path`` now (False if there is no file)."""
    path = Path(path)
    if not path.is_file():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
