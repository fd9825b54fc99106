"""Frozen vision features on disk, shared by every run and stage that reads the same images
through the same frozen encoder.

A stage whose vision tower is frozen, and was frozen in every stage before it, computes the same
features for an image every time it sees it: in every step, every seed, every LM of a sweep. The
cache stores them once per (encoder, image content):

    <cache_dir>/features/<encoder_key>/<hh>/<image sha256>.npy    (N, D_v) float32

The encoder key hashes what the features depend on (the vision option with its weights' origin,
resolution, resize strategy, feature layer, prefix tokens and the tower layout:
``experiment.features.encoder_key``); an image is named by its content, so a moved or renamed
file hits and a changed one misses. Files are written atomically (temporary name, then rename),
so two processes filling the same entry at once both leave a complete file. Images are never
augmented in this harness; a tower that trains never uses the cache.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msl_ablate.utils.files import atomic_path, file_digest

FEATURES_DIR = "features"
# An image is named by the SHA-256 of its bytes (cached per path, size and modification time).
image_digest = file_digest


@dataclass(frozen=True)
class FeatureCache:
    """The cached features of one encoder.

    Attributes:
        root: ``<cache_dir>/features``.
        encoder_key: Names the encoder (see the module docstring).
    """

    root: Path
    encoder_key: str

    @property
    def folder(self) -> Path:
        return self.root / self.encoder_key

    @property
    def lock(self) -> Path:
        """Held while the cache is filled, so a second process waits instead of recomputing."""
        return self.root / f"{self.encoder_key}.lock"

    def path(self, digest: str) -> Path:
        return Path(self._file(digest))

    def _file(self, digest: str) -> str:
        # os.path, not pathlib: get() builds it for every item of every step.
        return os.path.join(self.root, self.encoder_key, digest[:2], digest + ".npy")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: str) -> torch.Tensor:
        """The features of an image, ``(N, D_v)``.

        Raises:
            FileNotFoundError: Not cached (fill the cache before training from it).
        """
        try:  # no separate existence check: it is a fifth of a read's time, on every item
            with open(self._file(digest), "rb") as handle:
                data = bytearray(handle.read())  # writable: torch warns on read-only arrays
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no cached vision features for image {digest} in {self.folder}; the stage fills "
                f"the cache before it trains from it (was it cleared while the run was going?)"
            ) from None
        return torch.from_numpy(_npy_array(data))

    def put(self, digest: str, features: torch.Tensor) -> None:
        """Store an image's features atomically."""
        with atomic_path(self.path(digest)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features.detach().to("cpu", torch.float32).contiguous().numpy())


# Every file of one encoder has the same .npy header (dtype and shape), so a header is parsed
# once and then only compared: np.load parses it (with ast) on every read, about half of the
# read time of a 16x128 array (measured on 2 cores).
_HEADERS: dict[bytes, tuple[int, np.dtype, tuple[int, ...]]] = {}


def _npy_array(data: bytearray) -> np.ndarray:
    """The array of a .npy file's bytes (a view of them)."""
    # Format 1.0: 6 magic bytes, the version (2), the header's length (2), then the header.
    header_end = 10 + int.from_bytes(data[8:10], "little") if data[6:8] == b"\x01\x00" else 0
    header = bytes(data[:header_end])
    known = _HEADERS.get(header)
    if known is None:
        buffer = io.BytesIO(data)
        if not header_end:  # another format version: never written by put()
            return np.load(buffer)
        np.lib.format.read_magic(buffer)
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buffer)
        if fortran_order or dtype.hasobject:  # never written by put(): read it the slow way
            return np.load(io.BytesIO(data))
        known = (buffer.tell(), dtype, shape)
        if len(_HEADERS) < 256:
            _HEADERS[header] = known
    offset, dtype, shape = known
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def cache_folders(root: Path) -> list[tuple[Path, int, int]]:
    """``(folder, images, bytes)`` of every encoder's cache under ``root``, largest first."""
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = list(folder.rglob("*.npy"))
        out.append((folder, len(files), sum(f.stat().st_size for f in files)))
    return sorted(out, key=lambda row: -row[2])


def clear(root: Path, encoder_key: str | None = None) -> int:
    """Delete one encoder's cache, or every one; returns the bytes freed."""
    freed = 0
    for folder, _, size in cache_folders(root):
        if encoder_key is None or folder.name == encoder_key:
            shutil.rmtree(folder, ignore_errors=True)
            freed += size
    return freed
