"""The frozen-feature cache in the stage graph: which stages read it, its key, filling it.

A stage reads its images' vision features from the cache (``data.feature_cache``) when the
cache is enabled and the vision tower is frozen in that stage and in every stage before it, so
the tower still has the weights it was loaded with. Before such a stage trains, the features of
every image of its split that the cache lacks are computed (in batches, the tower in eval mode,
under the encoder's lock: a second process waits, then finds them) and the training loop never
runs the tower.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from msl_ablate.config.enums import Mode
from msl_ablate.data.feature_cache import (
    FEATURES_DIR,
    FeatureCache,
    cache_folders,
    clear,
    image_digest,
)
from msl_ablate.experiment.keys import model_inputs
from msl_ablate.models.vision.base import VisionEncoder
from msl_ablate.utils.files import stable_hash
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


def encoder_key(cfg: DictConfig) -> str:
    """What an image's features depend on besides the image: the vision option as a stage key
    sees it (weights' origin, resolution, resize, feature layer, prefix tokens, tower layout)."""
    parts = model_inputs(cfg)
    return stable_hash({"vision": parts["vision"], "zoo": parts.get("zoo")}, 16)


def stage_feature_cache(cfg: DictConfig, stage_name: str) -> FeatureCache | None:
    """The cache this stage reads its features from, or None (disabled, or the tower trains
    in this stage or trained in one before it)."""
    if not cfg.data.feature_cache.enabled:
        return None
    for name, stage in cfg.strategy.stages.items():
        if Mode(stage.vision.mode) is not Mode.frozen:
            return None
        if name == stage_name:
            break
    return FeatureCache(feature_root(cfg), encoder_key(cfg))


def feature_root(cfg: DictConfig) -> Path:
    """Where every encoder's features are kept (``data.feature_cache.dir``)."""
    folder = cfg.data.feature_cache.dir
    return Path(folder).expanduser() if folder else Path(cfg.paths.cache_dir) / FEATURES_DIR


@torch.no_grad()
def fill_feature_cache(
    cache: FeatureCache,
    vision: VisionEncoder,
    images: list[Path],
    max_gb: float | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> int:
    """Compute and store the features of the images the cache lacks.

    Args:
        cache: The encoder's cache.
        vision: The frozen encoder (put in eval mode for the fill, then restored).
        images: Image files (duplicates allowed).
        max_gb: Size limit of every encoder's cache together: the least recently used other
            encoders' caches are deleted beyond it.
        batch_size: Images per forward pass.
        device: Where the tower runs for the fill (moved there and back); None: where it is.

    Returns:
        How many images' features were computed.
    """
    with hold(cache.lock, f"vision features {cache.encoder_key}"):
        digests = {image_digest(p): p for p in images}
        missing = [(d, p) for d, p in digests.items() if not cache.has(d)]
        if missing:
            log.info("Vision features: computing %d of %d images into %s", len(missing),
                     len(digests), cache.folder)  # fmt: skip
            was_training = vision.training
            home = next(vision.parameters()).device
            vision.eval().to(device or home)
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                pixels = []
                for _, path in chunk:
                    with Image.open(path) as image:
                        pixels.append(vision.image_transform(image))
                features = vision(torch.stack(pixels).to(device or home))  # (B, N, D_v)
                for (digest, _), feats in zip(chunk, features, strict=True):
                    cache.put(digest, feats)
            vision.train(was_training).to(home)
        cache.folder.mkdir(parents=True, exist_ok=True)
        os.utime(cache.folder)  # recently used: the size limit evicts the others first
        if max_gb is not None:
            _evict(cache, int(max_gb * 1e9))
    return len(missing)


def _evict(cache: FeatureCache, max_bytes: int) -> None:
    """Delete the least recently used other encoders' caches while the total exceeds
    ``max_bytes`` (this encoder's stays, however large)."""
    folders = cache_folders(cache.root)
    total = sum(size for _, _, size in folders)
    others = sorted(
        (f for f in folders if f[0] != cache.folder), key=lambda f: f[0].stat().st_mtime
    )
    for folder, _, size in others:
        if total <= max_bytes:
            break
        log.info("Vision features: cache above %.1f GB, deleting %s", max_bytes / 1e9, folder)
        clear(cache.root, folder.name)
        total -= size
