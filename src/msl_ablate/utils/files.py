"""Atomic file writes and content hashing.

Every file the harness writes goes through a temporary file in the same folder and
``os.replace``, so a killed run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    Args:
        path: The final destination.

    Yields:
        A temporary path in the same folder to write to.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (flushed to disk before the rename).

    Returns:
        The destination path.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def build_dir_atomically(
    dest: str | os.PathLike,
    build: Callable[[Path], None],
    is_complete: Callable[[Path], bool] = Path.exists,
) -> Path:
    """Build a folder in a temporary sibling and rename it into place.

    A killed build leaves no half-written folder, and a stale folder (one that is not
    complete for the caller, e.g. built with other arguments) is replaced.

    Args:
        dest: The final folder.
        build: Writes the folder's content into the temporary path it is given.
        is_complete: Whether a folder at ``dest`` is already what the caller wants.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    if is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        build(tmp)
        if is_complete(dest):  # a concurrent build finished first; others may be reading it
            shutil.rmtree(tmp, ignore_errors=True)
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except OSError:
        if not is_complete(dest):  # a concurrent build may have won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by ``write_json_atomic``."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash a JSON-serialisable object independently of dict key order.

    Args:
        obj: Plain containers of str/int/float/bool/None.
        length: Number of hex characters to keep.

    Returns:
        A short hex digest.
    """
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted).

    Cached per (path, size, modification time): a sweep hashes each file once.
    """
    path = Path(path)
    if path.is_dir():
        parts = [f"{p.relative_to(path)}:{file_digest(p)}" for p in sorted(path.rglob("*"))
                 if p.is_file()]  # fmt: skip
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# Large enough for the images of a data split (the frozen-feature cache names them by content).
@functools.lru_cache(maxsize=1 << 17)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
