"""The frozen-feature cache: the same training, the tower never run on a hit, concurrent fills,
keys that follow what the features depend on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from msl_ablate.data.feature_cache import FEATURES_DIR, FeatureCache, cache_folders, image_digest
from msl_ablate.experiment.features import encoder_key, fill_feature_cache, stage_feature_cache
from msl_ablate.experiment.layout import StageLayout
from msl_ablate.experiment.stages import fit_stage
from msl_ablate.models.assemble import build_vision_encoder, build_vlm, max_sequence_length
from msl_ablate.training.strategy import apply_stage

FT = "strategy.stages.finetune"
# Three steps that move the weights by ~1e-3, so that a difference in the features would show.
STEPS = (f"{FT}.max_steps=3", f"{FT}.batch_size=8", f"{FT}.lm.lr=1e-3", f"{FT}.projector.lr=1e-3")
ON = "data.feature_cache.enabled=true"


def _fit(cfg, root: Path) -> tuple[dict[str, torch.Tensor], int, torch.nn.Module]:
    """Fit the finetune stage; its trained weights and how often the tower ran during the fit."""
    L.seed_everything(cfg.seed)
    vlm = build_vlm(cfg)
    calls = []
    vlm.vision.register_forward_hook(lambda *_: calls.append(1))
    stage = cfg.strategy.stages.finetune
    groups = apply_stage(vlm, stage)
    fit_stage(cfg, vlm, stage, groups, StageLayout.of(root, "finetune"),
              max_sequence_length(cfg, vlm), logger=False)  # fmt: skip
    weights = {n: p.detach().clone() for n, p in vlm.named_parameters() if p.requires_grad}
    return weights, len(calls), vlm


def test_training_from_cached_features_is_training_from_pixels(make_cfg, tmp_path):
    plain, plain_calls, _ = _fit(make_cfg(*STEPS), tmp_path / "plain")
    assert plain_calls == 3  # the tower runs on every step's images
    cfg = make_cfg(*STEPS, ON, f"data.feature_cache.dir={tmp_path / 'features'}")
    cached, fill_calls, vlm = _fit(cfg, tmp_path / "cached")
    cache = stage_feature_cache(cfg, "finetune")
    files = list(cache.folder.rglob("*.npy"))
    assert fill_calls == -(-len(files) // 64) > 0  # only the fill's batches ran the tower
    again, hit_calls, _ = _fit(cfg, tmp_path / "again")
    assert hit_calls == 0  # a hit never runs the encoder
    start = _fresh_weights(cfg)
    moved = max((plain[n] - start[n]).abs().max().item() for n in plain)
    for name, value in plain.items():
        assert (cached[name] - value).abs().max().item() < 1e-3 * moved, name
        torch.testing.assert_close(again[name], cached[name], rtol=0, atol=0)
    # The cached features are the tower's, image by image.
    _assert_cached_features_are_the_towers(vlm.vision, cache, _images(vlm, cfg)[:5])


def _assert_cached_features_are_the_towers(vision, cache: FeatureCache, images: list[Path]):
    vision.eval()
    for path in images:
        with Image.open(path) as img, torch.no_grad():
            direct = vision(vision.image_transform(img)[None])[0]
        torch.testing.assert_close(cache.get(image_digest(path)), direct, rtol=0, atol=1e-5)


def _fresh_weights(cfg) -> dict[str, torch.Tensor]:
    L.seed_everything(cfg.seed)
    vlm = build_vlm(cfg)
    apply_stage(vlm, cfg.strategy.stages.finetune)
    return {n: p.detach().clone() for n, p in vlm.named_parameters() if p.requires_grad}


def _images(vlm, cfg) -> list[Path]:
    from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root

    stage = cfg.strategy.stages.finetune
    datamodule = VLMDataModule(
        cfg.data, resolve_data_root(cfg.data, cfg.paths.data_dir), stage.split,
        vlm.lm.tokenizer, vlm.vision.image_transform, vlm.num_image_tokens, 512, 8,
    )  # fmt: skip
    datamodule.setup("fit")
    return datamodule.train_set.image_paths()


FILL = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from msl_ablate.config.compose import compose
    from msl_ablate.experiment.features import fill_feature_cache, stage_feature_cache
    from msl_ablate.models.assemble import build_vision_encoder
    cfg = compose(sys.argv[2:])
    images = [Path(p) for p in Path(sys.argv[1]).read_text().split()]
    cache = stage_feature_cache(cfg, "finetune")
    print(fill_feature_cache(cache, build_vision_encoder(cfg), images, batch_size=4))
    """
)


def test_two_processes_filling_one_cache_at_once_leave_it_valid(make_cfg, tmp_path):
    cfg = make_cfg(ON, f"data.feature_cache.dir={tmp_path / 'features'}")
    vlm = build_vlm(cfg)
    images = _images(vlm, cfg)
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(map(str, images)))
    overrides = [ON, f"data.feature_cache.dir={tmp_path / 'features'}", f"paths.root={tmp_path}",
                 f"paths.cache_dir={os.environ['MSL_ABLATE_CACHE']}"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-c", FILL, str(listing), *overrides], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    computed = [int(p.communicate(timeout=300)[0].split()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(computed) == [0, len(images)]  # one computed them all, the other found them
    cache = stage_feature_cache(cfg, "finetune")
    assert not list(cache.folder.rglob("*.tmp"))
    _assert_cached_features_are_the_towers(build_vision_encoder(cfg), cache, images[:5])


def test_the_key_follows_what_the_features_depend_on(make_cfg, tmp_path):
    base = make_cfg(ON)
    assert encoder_key(make_cfg(ON, "vision.image_size=48")) != encoder_key(base)  # resolution
    assert encoder_key(make_cfg(ON, "vision.feature_layer=-1")) != encoder_key(base)
    assert encoder_key(make_cfg(ON, "lm=tiny_phi", "seed=3")) == encoder_key(base)  # not the LM
    assert stage_feature_cache(make_cfg(), "align") is None  # disabled
    assert stage_feature_cache(base, "align") is not None
    trained = make_cfg(ON, f"{FT}.vision.mode=full", f"{FT}.vision.lr=1e-5")
    assert stage_feature_cache(trained, "align") is not None
    assert stage_feature_cache(trained, "finetune") is None  # the tower trains
    first = make_cfg(
        ON, "strategy.stages.align.vision.mode=full", "strategy.stages.align.vision.lr=1e-5"
    )
    assert stage_feature_cache(first, "finetune") is None  # it trained in the stage before


def test_the_size_limit_deletes_the_least_recently_used_encoders(tmp_path):
    root = tmp_path / FEATURES_DIR
    caches = [FeatureCache(root, f"enc{i}") for i in range(3)]
    for i, cache in enumerate(caches):
        cache.put(f"{i:064x}", torch.zeros(1000, 100))  # 400 kB each
        os.utime(cache.folder, (1000 + i, 1000 + i))
    fill_feature_cache(
        caches[0], None, [], max_gb=0.0009
    )  # nothing missing: no tower needed  # 900 kB: one other must go
    assert sorted(f.name for f, _, _ in cache_folders(root)) == ["enc0", "enc2"]
    with pytest.raises(FileNotFoundError, match="no cached vision features"):
        caches[1].get(f"{1:064x}")
