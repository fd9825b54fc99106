"""End to end: `msl-ablate import` makes a released checkpoint a run that `evaluate` benchmarks
under the study's protocols; the harness computes what the release computes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from tests.helpers.mipha_files import TinyMipha

from msl_ablate.cli import main
from msl_ablate.config.compose import compose
from msl_ablate.data.conversation import tokenize_conversation
from msl_ablate.experiment.export import trained_model
from msl_ablate.experiment.runs import load_run_config
from msl_ablate.models.zoo import ensure_tokenizer
from msl_ablate.results import store


@pytest.fixture
def mipha(tmp_path: Path) -> tuple[TinyMipha, Path]:
    tiny = TinyMipha(ensure_tokenizer(Path(os.environ["MSL_ABLATE_CACHE"]) / "zoo"))
    return tiny, tiny.save(tmp_path / "Mipha-tiny")


def _imported_key(out: str) -> str:
    return re.search(r"as training (\w+)", out).group(1)


def test_a_mipha_release_is_computed_as_mipha_computes_it(mipha, tmp_path, capsys):
    tiny, folder = mipha
    root = f"paths.root={tmp_path / 'runs'}"
    assert main(["import", str(folder), "--layout", "mipha", "--name", "tiny_mipha", root]) == 0
    key = _imported_key(capsys.readouterr().out)

    current = compose([root])
    cfg = load_run_config(tmp_path / "runs" / "outputs" / "trainings" / key, current, [])
    assert (cfg.vision.name, cfg.lm.name, cfg.projector.name) == ("tiny_mipha",) * 2 + (
        "mlp2x_gelu",
    )
    assert (cfg.vision.feature_layer, cfg.vision.drop_cls, cfg.vision.resize,
            cfg.lm.family) == (-2, False, "letterbox", "phi")  # fmt: skip
    vlm = trained_model(cfg)
    image = Image.new("RGB", (48, 30), (20, 90, 200))  # wide: letterboxed as expand2square
    ImageDraw.Draw(image).ellipse((10, 5, 30, 25), fill=(230, 50, 40))
    question = "What is in the image?"
    sample = tokenize_conversation(vlm.lm.tokenizer, [{"role": "user", "content":
                                   f"<image>\n{question}"}], vlm.num_image_tokens, True)  # fmt: skip
    ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        ours = vlm(input_ids=ids, attention_mask=torch.ones_like(ids),
                   pixel_values=vlm.vision.image_transform(image)[None]).logits[0]  # fmt: skip
    theirs = tiny.logits(image, question)
    assert vlm.num_image_tokens == 16 and ours.shape == theirs.shape  # (32 / 8)^2 patches
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()

    # Benchmarked like any run: an evaluation run, store rows named after the release.
    assert main(["evaluate", "--run", key, "--benchmarks", "pope", root,
                 "eval.suite.generator.n_questions=6"]) == 0  # fmt: skip
    df = store.load(tmp_path / "runs" / "results" / store.STORE_FILE)
    rows = df[df["training_key"] == key]
    assert set(rows["vision"]) == {"tiny_mipha"} and set(rows["strategy"]) == {"released"}
    assert "POPE" in store.headline_table(df).columns


def test_an_import_says_what_is_wrong(mipha, tmp_path, capsys):
    _, folder = mipha
    root = f"paths.root={tmp_path / 'runs'}"
    assert (
        main(["import", str(tmp_path / "nothing"), "--layout", "mipha", "--name", "x", root]) == 2
    )
    assert "nothing/config.json does not exist" in capsys.readouterr().err
    assert main(["import", str(folder), "--layout", "llava-hf", "--name", "x", root]) == 2
    assert "model_type 'mipha_phi', expected 'llava'" in capsys.readouterr().err
    assert main(["import", str(folder), "--layout", "mipha", "--name", "m", root]) == 0
    assert main(["import", str(folder), "--layout", "mipha", "--name", "m", root]) == 2
    assert "a release named 'm' was imported already" in capsys.readouterr().err
    assert main(["import", str(folder), "--layout", "mipha", "--name", "n", "lm=tiny_phi"]) == 2
    assert "import takes only paths.*, tracking.*" in capsys.readouterr().err
