"""The parity gate of an export: the saved llava-hf folder, loaded as another tool loads it,
must see the same inputs, give the same logits and the same greedy answers as the harness.

Each probe (a drawn image, or none, and a question) goes both ways:

* the harness: its own tokenization (``tokenize_conversation``), image transform, forward and
  greedy ``generate``;
* the folder: ``AutoProcessor`` + ``LlavaForConditionalGeneration.from_pretrained``, prompts
  built the two ways tools build them (``processor.apply_chat_template(..., tokenize=True)``
  and ``processor(text=<rendered template>, images=...)``), images through the PIL backend,
  ``generate`` greedy.

Token ids and pixels must be equal, logits within ``LOGIT_TOLERANCE`` (relative to their
largest magnitude), answers equal; the first difference raises ``ParityError`` naming the probe
and the position. transformers' torchvision image backend (its default) resizes with other
rounding than PIL: its largest pixel difference and its answers are measured and reported, not
gated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from msl_ablate.data.conversation import tokenize_conversation
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.models.vlm import VisionLanguageModel

LOGIT_TOLERANCE = 1e-4  # float32 on both sides; the same kernels up to summation order
PIXEL_TOLERANCE = 1e-6  # the same PIL resize; x / 255 and x * (1 / 255) may differ in the last bit
MAX_NEW_TOKENS = 12


class ParityError(ValueError):
    """The exported folder and the harness disagree; the message names the first difference."""


@dataclass(frozen=True)
class Probe:
    """A question, with an image or without."""

    name: str
    question: str
    image: Image.Image | None


def probe_set() -> list[Probe]:
    """Fixed probes: images of several sizes and aspect ratios (drawn, so no file is needed),
    and one text-only question."""
    rng = np.random.default_rng(0)
    wide = Image.new("RGB", (96, 64), (30, 60, 200))
    ImageDraw.Draw(wide).ellipse((20, 10, 60, 50), fill=(220, 40, 40))
    tall = Image.new("RGB", (48, 80), (240, 240, 240))
    ImageDraw.Draw(tall).rectangle((8, 20, 40, 60), fill=(20, 160, 60))
    noise = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    square = Image.new("RGB", (64, 64), (250, 200, 0))
    return [
        Probe("wide", "What is in the image?", wide),
        Probe("tall", "What colour is the shape?\nAnswer with one word.", tall),
        Probe("noise", "Describe the image in detail.", noise),
        Probe("square", "Is there a circle in the image? Answer yes or no.", square),
        Probe("text-only", "What is two plus two?", None),
    ]


def _harness(vlm: VisionLanguageModel, probe: Probe) -> dict[str, torch.Tensor]:
    content = probe.question if probe.image is None else f"{IMAGE_TOKEN}\n{probe.question}"
    sample = tokenize_conversation(vlm.lm.tokenizer, [{"role": "user", "content": content}],
                                   vlm.num_image_tokens, for_generation=True)  # fmt: skip
    ids = torch.tensor([sample.input_ids])
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if probe.image is not None:
        out["pixel_values"] = vlm.vision.image_transform(probe.image)[None]  # (1, 3, H, W)
    return out


def _messages(probe: Probe) -> list[dict[str, Any]]:
    items = [] if probe.image is None else [{"type": "image", "image": probe.image}]
    return [{"role": "user", "content": [*items, {"type": "text", "text": probe.question}]}]


def _folder_inputs(processor: Any, probe: Probe) -> dict[str, dict[str, torch.Tensor]]:
    """The probe's inputs as tools build them: by the processor's template, or the rendered
    template passed to the processor as text."""
    messages = _messages(probe)
    templated = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = None if probe.image is None else [probe.image]
    as_text = processor(text=[text], images=images, return_tensors="pt")
    return {"apply_chat_template": dict(templated), "processor(text=...)": dict(as_text)}


def _first_difference(ours: torch.Tensor, theirs: torch.Tensor) -> str | None:
    if ours.shape != theirs.shape:
        return f"shape {tuple(theirs.shape)} instead of the harness's {tuple(ours.shape)}"
    differs = (
        (ours - theirs).abs() > PIXEL_TOLERANCE if ours.is_floating_point() else ours != theirs
    )
    where = differs.nonzero()
    if len(where) == 0:
        return None
    at = tuple(int(i) for i in where[0])
    return f"at {at}: {theirs[at].item()} instead of the harness's {ours[at].item()}"


def _logit_gap(probe: Probe, ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """``(largest difference, largest logit)``; raises when beyond ``LOGIT_TOLERANCE``."""
    scale = float(ours.abs().max())
    gap = float((ours - theirs).abs().max())
    if gap > LOGIT_TOLERANCE * max(scale, 1.0):
        position = int((ours - theirs).abs().amax(dim=-1).argmax())
        raise ParityError(f"probe {probe.name!r}: logits differ by {gap:.3g} (largest logit "
                          f"{scale:.3g}) first at its position {position}")  # fmt: skip
    return gap, scale


def check_logits(vlm: VisionLanguageModel, model: Any) -> dict[str, float]:
    """The harness's inputs of every probe through ``model`` (a transformers LLaVA that should
    hold the same weights): its logits must be the harness's.

    Returns:
        Probe name -> largest logit difference.

    Raises:
        ParityError: The first probe whose logits differ.
    """
    vlm.eval()
    gaps = {}
    for probe in probe_set():
        ours = _harness(vlm, probe)
        with torch.no_grad():
            gaps[probe.name] = _logit_gap(probe, vlm(**ours).logits, model(**ours).logits)[0]
    return gaps


def check_mipha(vlm: VisionLanguageModel, folder: Path) -> dict[str, Any]:
    """Compare a folder in Mipha's layout with the harness on ``probe_set()``: Mipha's forward
    pass (``evaluation.mipha_reference``) on the harness's prompt tokens, its own image
    preprocessing, must give the harness's logits.

    Returns:
        A report: per probe the largest logit difference.

    Raises:
        ParityError: The first probe whose logits differ.
    """
    from msl_ablate.evaluation.mipha_reference import MiphaReference

    reference = MiphaReference(folder)
    vlm.eval()
    probes = {}
    for probe in probe_set():
        ours = _harness(vlm, probe)
        ids = ours["input_ids"][0].tolist()
        slots = [i for i, t in enumerate(ids) if t == vlm.image_token_id]
        before, after = (ids, []) if not slots else (ids[: slots[0]], ids[slots[-1] + 1 :])
        with torch.no_grad():
            theirs = reference.logits(probe.image, before, after)[None]
            gap, scale = _logit_gap(probe, vlm(**ours).logits, theirs)
        probes[probe.name] = {"max_logit_difference": gap, "largest_logit": scale}
    return {"probes": probes, "logit_tolerance": LOGIT_TOLERANCE}


def check_export(vlm: VisionLanguageModel, folder: Path) -> dict[str, Any]:
    """Compare the llava-hf folder with the harness on ``probe_set()``.

    Args:
        vlm: The harness's model, exactly as exported (LoRA merged).
        folder: The saved llava-hf folder.

    Returns:
        A report: per probe the largest logit difference and both answers, and what the
        torchvision image backend changes.

    Raises:
        ParityError: The first input, logit or answer that differs.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    fast = AutoProcessor.from_pretrained(folder)  # the backend tools get by default
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = vlm.lm.tokenizer
    vlm.eval()
    probes, fast_pixels, fast_agree = {}, 0.0, 0
    for probe in probe_set():
        ours = _harness(vlm, probe)
        for way, theirs in _folder_inputs(processor, probe).items():
            for key, value in ours.items():
                found = _first_difference(value, theirs.get(key, torch.empty(0)))
                if found is not None:
                    raise ParityError(f"probe {probe.name!r}: {way} gives {key} that differ "
                                      f"{found}")  # fmt: skip
        inputs = _folder_inputs(processor, probe)["apply_chat_template"]
        with torch.no_grad():
            gap, scale = _logit_gap(probe, vlm(**ours).logits, model(**inputs).logits)
        n = ours["input_ids"].shape[1]
        our_ids = vlm.generate(ours["input_ids"], ours["attention_mask"],
                               ours.get("pixel_values"), MAX_NEW_TOKENS)[0]  # fmt: skip
        their_ids = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)[0, n:]
        answers = [tokenizer.decode(i, skip_special_tokens=True).strip()
                   for i in (our_ids, their_ids)]  # fmt: skip
        if answers[0] != answers[1]:
            raise ParityError(f"probe {probe.name!r}: greedy answer {answers[1]!r} instead of the "
                              f"harness's {answers[0]!r}")  # fmt: skip
        if probe.image is not None:
            pixels = fast.image_processor(images=[probe.image], return_tensors="pt")
            gap_px = float((pixels["pixel_values"] - ours["pixel_values"]).abs().max())
            fast_pixels = max(fast_pixels, gap_px)
            fast_in = fast(text=[processor.apply_chat_template(_messages(probe),
                                 add_generation_prompt=True, tokenize=False)],
                           images=[probe.image], return_tensors="pt")  # fmt: skip
            fast_ids = model.generate(**fast_in, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            fast_agree += int(tokenizer.decode(fast_ids[0, n:], skip_special_tokens=True).strip()
                              == answers[0])  # fmt: skip
        probes[probe.name] = {"max_logit_difference": gap, "largest_logit": scale,
                              "answer": answers[0]}  # fmt: skip
    with_images = sum(p.image is not None for p in probe_set())
    return {
        "probes": probes,
        "logit_tolerance": LOGIT_TOLERANCE,
        "max_new_tokens": MAX_NEW_TOKENS,
        "torchvision_backend": {
            "max_pixel_difference": fast_pixels,
            "answers_equal": f"{fast_agree}/{with_images}",
        },
    }
