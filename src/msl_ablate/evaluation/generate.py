"""Batched greedy generation over a LLaVA-format split."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.utils.logging import is_rank_zero


@torch.no_grad()
def generate_answers(
    vlm: VisionLanguageModel,
    dataset: LlavaDataset,
    batch_size: int = 64,
    max_new_tokens: int = 8,
    desc: str = "generating",
) -> dict[str, str]:
    """Answer every prompt of a generation dataset.

    Args:
        vlm: The model.
        dataset: A ``LlavaDataset`` built with ``for_generation=True``.
        batch_size: Prompts per batch (left-padded).
        max_new_tokens: Longest answer.
        desc: Label of the progress bar (the benchmark's name).

    Returns:
        ``{record id: decoded answer}``.
    """
    if not dataset.for_generation:
        raise ValueError("generate_answers needs a dataset built with for_generation=True")
    tokenizer = vlm.lm.tokenizer
    loader = DataLoader(
        dataset, batch_size=batch_size, collate_fn=VLMCollator(tokenizer.pad_token_id, "left")
    )
    was_training = vlm.training
    vlm.eval()
    answers: dict[str, str] = {}
    device = next(vlm.parameters()).device
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not is_rank_zero()):
        pixel_values = batch.get("pixel_values")
        new_tokens = vlm.generate(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            None if pixel_values is None else pixel_values.to(device),
            max_new_tokens=max_new_tokens,
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        answers.update({rid: t.strip() for rid, t in zip(batch["ids"], texts, strict=True)})
    vlm.train(was_training)
    return answers
