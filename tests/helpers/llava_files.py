"""Data files in the layouts LLaVA releases them in, with one record of each kind (shared by
the unit and e2e tests)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

ASK = "What is in the image?"


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def released(root: Path, broken: bool = True) -> Path:
    """A mix file in llava_v1_5_mix665k.json's layout, with one record of each kind (``broken``:
    also one whose image cannot be read)."""
    for sub in ("coco/train2017", "ocr_vqa/images", "gqa/images"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(root / "coco/train2017/000001.jpg")
    Image.new("RGB", (30, 40), "blue").save(root / "gqa/images/2354786.jpg")
    Image.new("RGB", (20, 20), "green").save(root / "ocr_vqa/images/140031996.gif")  # misnamed
    Image.new("RGB", (20, 20), "white").save(root / "gqa/images/png_as.jpg", format="PNG")
    (root / "coco/train2017/broken.jpg").write_bytes(b"not an image")
    records = [
        {"id": "000001", "image": "coco/train2017/000001.jpg",  # multi-turn, <image> first
         "conversations": _turns(f"<image>\n{ASK}", "A red square.", "And its colour?", "Red.")},
        {"id": 2354786, "image": "gqa/images/2354786.jpg",  # integer id, <image> at the end
         "conversations": _turns(f"{ASK}<image>", "Blue.")},
        {"id": "no-placeholder", "image": "gqa/images/2354786.jpg",
         "conversations": _turns(ASK, "Blue.")},
        {"id": "text-only", "conversations": _turns("Say hi.", "Hi.")},
        {"id": "missing", "image": "coco/train2017/999.jpg", "conversations": _turns(ASK, "?")},
        {"id": "140031996", "image": "ocr_vqa/images/140031996.jpg",
         "conversations": _turns(ASK, "A book.")},
        {"id": "bad-turn", "image": "coco/train2017/000001.jpg",
         "conversations": [{"from": "human", "value": ASK}, {"from": "bot", "value": "x"}]},
        {"id": "000001", "image": "coco/train2017/000001.jpg",  # a duplicate id
         "conversations": _turns(f"<image>\n{ASK}", "Red.")},
        *([{"id": "broken", "image": "coco/train2017/broken.jpg",
            "conversations": _turns(ASK, "?")}] if broken else []),
        {"id": "png", "image": "gqa/images/png_as.jpg", "conversations": _turns(ASK, "White.")},
    ]  # fmt: skip
    path = root / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(records))
    return path


def pretrain(root: Path, n: int = 8) -> Path:
    """A captions file in blip_laion_cc_sbu_558k.json's layout (``<image>`` at the end, after a
    newline) with its images under ``LLaVA-Pretrain/images/<shard>/``."""
    folder = root / "LLaVA-Pretrain"
    records = []
    for i in range(n):
        name = f"00453/0045393{i:02d}.jpg"
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 36), (30 * i, 200 - 20 * i, 90)).save(folder / "images" / name)
        records.append({"id": f"0045393{i:02d}", "image": name,
                        "conversations": _turns("Render a clear and concise summary of the "
                                                "photo.\n<image>", f"a square of colour {i}")})  # fmt: skip
    path = folder / "blip_laion_cc_sbu_558k.json"
    path.write_text(json.dumps(records))
    return path
