"""Write the miniature benchmark suite: images, LLaVA question files and official annotations.

Layout under the suite root (one folder per benchmark, named like the scorer)::

    manifest.json                      params + version (+ counts); written last
    <benchmark>/images/...             rendered scenes
    <benchmark>/llava_<benchmark>.jsonl  {"question_id", "image", "text"} per line
    <benchmark>/<annotations>          the official format (``ANNOTATIONS`` below)

Each benchmark draws from its own random stream, seeded by a string that names the suite, the
seed and the benchmark: held out from the training data (whose generator is seeded by an int)
and independent of the other benchmarks' sizes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msl_ablate.data.world import WORLD_VERSION, render_scene
from msl_ablate.evaluation.scoring.files import write_json, write_jsonl
from msl_ablate.evaluation.scoring.gqa import write_gqa
from msl_ablate.evaluation.scoring.mmbench import write_mmbench
from msl_ablate.evaluation.scoring.mme import write_mme
from msl_ablate.evaluation.scoring.pope import write_pope
from msl_ablate.evaluation.scoring.scienceqa import write_scienceqa
from msl_ablate.evaluation.scoring.textvqa import write_textvqa
from msl_ablate.evaluation.scoring.vqav2 import write_vqav2
from msl_ablate.evaluation.suite.choice import build_mmbench, build_sqa
from msl_ablate.evaluation.suite.open_ended import (
    build_gqa,
    build_mmvet,
    build_textvqa,
    build_vqav2,
)
from msl_ablate.evaluation.suite.scenes import Item
from msl_ablate.evaluation.suite.yes_no import build_mme, build_pope
from msl_ablate.utils.files import build_dir_atomically, stable_hash
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

# Bump when the output changes for the same arguments: cached suites are then rebuilt.
SUITE_VERSION = 1
MANIFEST = "manifest.json"
IMAGES = "images"
VQAV2_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"


def question_file(benchmark: str) -> str:
    """The LLaVA question file of a benchmark, relative to the suite root."""
    return f"{benchmark}/llava_{benchmark}.jsonl"


def _write_mmvet(path: Path, records: list[dict[str, Any]]) -> Path:
    # MM-Vet's mm-vet.json: {question_id: {imagename, capability, question, answer}}.
    return write_json(
        path,
        {r["question_id"]: {k: v for k, v in r.items() if k != "question_id"} for r in records},
        indent=2,
    )


Builder = Callable[[random.Random, int], list[Item]]
Writer = Callable[[Path, list[dict[str, Any]]], Path]
# benchmark -> (builder, annotations path relative to the benchmark folder, official writer)
BENCHMARKS: dict[str, tuple[Builder, str, Writer]] = {
    "vqav2": (
        build_vqav2,
        "v2_mscoco_val2014_annotations.json",
        lambda p, r: write_vqav2(p, r, questions_path=p.with_name(VQAV2_QUESTIONS)),
    ),
    "gqa": (build_gqa, "testdev_balanced_questions.json", write_gqa),
    "textvqa": (build_textvqa, "TextVQA_0.5.1_val.json", write_textvqa),
    "pope": (build_pope, "coco", write_pope),  # coco_pope_<split>.json files
    "mme": (build_mme, "ground_truth", write_mme),  # <category>.txt files
    "sqa_img": (build_sqa, "scienceqa", write_scienceqa),  # problems.json + pid_splits.json
    "mmbench": (build_mmbench, "mmbench_dev.tsv", write_mmbench),
    "mmvet": (build_mmvet, "mm-vet.json", _write_mmvet),  # no local metric (graded by GPT-4)
}


def annotations_path(benchmark: str) -> str:
    """The official annotation file or folder of a benchmark, relative to the suite root."""
    return f"{benchmark}/{BENCHMARKS[benchmark][1]}"


def _write_benchmark(folder: Path, name: str, items: list[Item], image_size: int) -> dict:
    _, annotations, write = BENCHMARKS[name]
    for item in items:
        if item.scene is not None and item.image is not None:
            path = folder / IMAGES / item.image
            path.parent.mkdir(parents=True, exist_ok=True)
            render_scene(item.scene, image_size).save(path)
    questions = [q for item in items for q in item.questions]
    write_jsonl(folder / f"llava_{name}.jsonl", questions)
    write(folder / annotations, [a for item in items for a in item.annotations])
    return {"n_questions": len(questions), "n_images": sum(i.scene is not None for i in items)}


def generate_suite(
    root: str | Path, seed: int = 0, image_size: int = 128, n_questions: int = 48
) -> Path:
    """Write every suite benchmark under ``root`` unless an identical suite is there.

    Args:
        root: Output folder; its ``manifest.json`` records the arguments and a version.
        seed: Seed of the suite (each benchmark derives its own stream from it).
        image_size: Side of the square PNG images. Rendered larger than the training images
            by default so that the encoder's resolution decides how legible the words are.
        n_questions: About how many questions (prompts) each benchmark has.

    Returns:
        The root folder.

    Raises:
        ValueError: ``n_questions`` or ``image_size`` below 1.
    """
    if n_questions < 1 or image_size < 1:
        raise ValueError(
            f"eval.suite.generator: n_questions and image_size must be >= 1, got "
            f"n_questions={n_questions}, image_size={image_size}"
        )
    params = {
        "seed": seed,
        "image_size": image_size,
        "n_questions": n_questions,
        "benchmarks": sorted(BENCHMARKS),
        "version": SUITE_VERSION,
        "world": WORLD_VERSION,
    }
    root = Path(root)
    if _matches(root, params):
        return root
    log.info("Generating the benchmark suite in %s (%s)", root, params)

    def build(tmp: Path) -> None:
        counts = {}
        for name, (make, _, _) in BENCHMARKS.items():
            items = make(random.Random(f"msl-ablate-suite/{seed}/{name}"), n_questions)
            counts[name] = _write_benchmark(tmp / name, name, items, image_size)
        manifest = {"params": params, "hash": stable_hash(params), "counts": counts}
        write_json(tmp / MANIFEST, manifest, indent=2)

    # Built beside the destination and renamed: a killed run never leaves half a suite, and a
    # suite written with other arguments is replaced.
    return build_dir_atomically(root, build, lambda path: _matches(path, params))


def _matches(root: Path, params: dict[str, Any]) -> bool:
    manifest = root / MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text())["params"] == params
