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


SHORT = "\nAnswer the question using a single word or phrase."


def _lines(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), "gray").save(path)


def eval_kit(root: Path) -> Path:
    """POPE, MME and TextVQA as LLaVA's eval.zip lays them out under ``playground/data/eval``
    (question files with the suffix in ``text``; MME and TextVQA ids naming an image), with the
    benchmarks' own annotation files beside them. Answers that are right: ``RIGHT``."""
    pope = {"adversarial": [("COCO_val2014_000000310196.jpg", "snowboard", "yes"),
                            ("COCO_val2014_000000310196.jpg", "bench", "no")],
            "random": [("COCO_val2014_000000210789.jpg", "dog", "no"),
                       ("COCO_val2014_000000210789.jpg", "cat", "yes")]}  # fmt: skip
    questions = []
    for offset, (split, rows) in zip((0, 10_000_000), pope.items(), strict=True):
        _lines(root / "pope" / "coco" / f"coco_pope_{split}.json",
               [{"question_id": i + 1, "image": im, "label": lab,
                 "text": f"Is there a {thing} in the imange?"}
                for i, (im, thing, lab) in enumerate(rows)])  # fmt: skip
        for i, (image, thing, _) in enumerate(rows):
            _image(root / "pope" / "val2014" / image)
            questions.append({"question_id": offset + i + 1, "image": image, "category": split,
                              "text": f"Is there a {thing} in the imange?{SHORT}"})  # fmt: skip
    _lines(root / "pope" / "llava_pope_test.jsonl", questions)

    mme = root / "MME" / "MME_Benchmark_release_version"
    _image(mme / "artwork" / "images" / "14777.jpg")
    _image(mme / "code_reasoning" / "0020.png")
    pairs = {"artwork/images/14777.jpg": [("Is this artwork created by Bosch?", "Yes"),
                                          ("Is this artwork created by Rubens?", "No")],
             "code_reasoning/0020.png": [("Is a python code shown in the picture?", "Yes"),
                                         ("Is a c++ code shown in the picture?", "No")]}  # fmt: skip
    (mme / "artwork" / "questions_answers_YN").mkdir(parents=True)
    for image, qa in pairs.items():
        stem = Path(image).stem
        txt = (mme / "artwork" / "questions_answers_YN" / f"{stem}.txt" if "artwork" in image
               else mme / "code_reasoning" / f"{stem}.txt")  # fmt: skip
        txt.write_text("".join(f"{q} Please answer yes or no.\t{a}\n" for q, a in qa))
    _lines(root / "MME" / "llava_mme.jsonl",
           [{"question_id": image, "image": image, "text": q + SHORT,
             "category": image.split("/")[0]} for image, qa in pairs.items() for q, _ in qa])  # fmt: skip

    text = root / "textvqa"
    data = [("003a8ae2ef43b901", 34602, "what is the brand of this camera?", "dakota"),
            ("003a8ae2ef43b901", 34603, "what does the small white text spell?", "nokia"),
            ("0054c91397f2fe05", 34604, "what number is on the bus?", "5")]  # fmt: skip
    text.mkdir(parents=True)
    (text / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": [
        {"question_id": q, "image_id": im, "question": question, "answers": [a] * 10}
        for im, q, question, a in data]}))  # fmt: skip
    for image, *_ in data:
        _image(text / "train_images" / f"{image}.jpg")
    _lines(text / "llava_textvqa_val_v051_ocr.jsonl",
           [{"question_id": im, "image": f"{im}.jpg", "category": "default",
             "text": f"{question.capitalize()}\nReference OCR token: DAKOTA, 5{SHORT}"}
            for im, _, question, _ in data])  # fmt: skip
    return root


# question text (without the suffix) -> the right answer, for a fake model
RIGHT = {"Is there a snowboard in the imange?": "Yes", "Is there a bench in the imange?": "No",
         "Is there a dog in the imange?": "No", "Is there a cat in the imange?": "Yes",
         "Is this artwork created by Bosch?": "Yes",
         "Is this artwork created by Rubens?": "No",
         "Is a python code shown in the picture?": "Yes",
         "Is a c++ code shown in the picture?": "No",
         "What is the brand of this camera?": "Dakota",
         "What does the small white text spell?": "Nokia", "What number is on the bus?": "5"}  # fmt: skip
