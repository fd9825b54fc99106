"""The vision-language model: vision encoder -> projector -> causal LM."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from msl_ablate.data.tokens import IGNORE_INDEX
from msl_ablate.models.lm import CausalLM
from msl_ablate.models.vision.base import VisionEncoder


class VisionLanguageModel(nn.Module):
    """LLaVA-style composition: projected patch features replace the image placeholder tokens.

    The data pipeline has already expanded each ``<image>`` into ``num_image_tokens`` copies
    of the placeholder id, so merging is a scatter with a count check, never a splice by
    position (no assumption about BOS or where the image sits in the prompt).

    Args:
        vision: The vision encoder.
        projector: Module mapping ``(B, N, D_v)`` to ``(B, N, D_lm)``.
        lm: The causal LM with its tokenizer.
    """

    def __init__(self, vision: VisionEncoder, projector: nn.Module, lm: CausalLM):
        super().__init__()
        self.vision = vision
        self.projector = projector
        self.lm = lm

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_tokens

    @property
    def image_token_id(self) -> int:
        return self.lm.image_token_id

    def encode_images(
        self, pixel_values: torch.Tensor | None = None, image_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Project images, from pixels or from precomputed vision features.

        Args:
            pixel_values: ``(B_img, 3, H, W)``.
            image_features: ``(B_img, N, D_v)`` precomputed by the same encoder.

        Returns:
            ``image_embeds`` of shape ``(B_img, N, D_lm)``.
        """
        if image_features is None:
            if pixel_values is None:
                raise ValueError("encode_images needs pixel_values or image_features")
            image_features = self.vision(pixel_values)  # (B_img, N, D_v)
        return self.projector(image_features)  # (B_img, N, D_lm)

    def merge_image_embeds(
        self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None
    ) -> torch.Tensor:
        """Embed the text and scatter image embeddings into the placeholder positions.

        Args:
            input_ids: ``(B, L)`` with ``N`` placeholder ids per image, images in batch order.
            image_embeds: ``(B_img, N, D_lm)`` or None for a text-only batch.

        Returns:
            ``inputs_embeds`` of shape ``(B, L, D_lm)``.

        Raises:
            RuntimeError: The number of placeholder tokens differs from the image features.
        """
        mask = input_ids == self.image_token_id  # (B, L)
        inputs_embeds = self.lm.embed_tokens(input_ids)  # (B, L, D_lm)
        n_slots = int(mask.sum())
        n_feats = 0 if image_embeds is None else image_embeds.shape[0] * image_embeds.shape[1]
        if n_slots != n_feats:
            raise RuntimeError(
                f"image tokens and features do not match: {n_slots} placeholder tokens in input_ids "
                f"but {n_feats} image features ({0 if image_embeds is None else image_embeds.shape[0]} "
                f"images x {self.num_image_tokens} tokens); prompt truncated by data.max_length?"
            )
        if image_embeds is None:
            return inputs_embeds
        flat = image_embeds.reshape(-1, image_embeds.shape[-1]).to(inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1), flat)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> CausalLMOutputWithPast:
        """The LM's output; with ``labels``, the loss on them (-100 is ignored).

        Without labels, ``logits`` are ``(B, L, V)``. With labels, logits are computed only at
        the positions whose next token is a label, flattened to ``(n_labels, V)`` (row-major
        over batch and position): image tokens, prompts and padding never reach the LM head
        and its softmax (about half the positions of a stage-1 batch). The loss is then
        transformers' causal-LM loss over the same terms: the mean over this batch's label
        tokens, or with ``num_items_in_batch`` their sum divided by it (a batch in parts).
        """
        has_images = pixel_values is not None or image_features is not None
        image_embeds = self.encode_images(pixel_values, image_features) if has_images else None
        inputs_embeds = self.merge_image_embeds(input_ids, image_embeds)  # (B, L, D_lm)
        if labels is None:
            return self.lm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        predicts = torch.zeros_like(labels, dtype=torch.bool)  # position p predicts token p + 1
        predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        out = self.lm.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, logits_to_keep=predicts
        )
        targets = labels[:, 1:][predicts[:, :-1]]
        if out.logits.shape[:-1] != targets.shape:
            raise RuntimeError(
                f"{type(self.lm.model).__name__} returned logits of shape "
                f"{tuple(out.logits.shape)} for a boolean logits_to_keep of {int(predicts.sum())} "
                "positions; the harness needs an LM whose forward keeps only those positions "
                "(transformers' slice_logits_to_keep, in every causal LM since transformers 5)"
            )
        loss = nn.functional.cross_entropy(out.logits.float(), targets, reduction="sum")
        out.loss = loss / (targets.numel() if num_items_in_batch is None else num_items_in_batch)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        max_new_tokens: int = 16,
    ) -> torch.Tensor:
        """Greedy decoding from left-padded prompts.

        Returns:
            The new token ids only, ``(B, <= max_new_tokens)``.
        """
        image_embeds = self.encode_images(pixel_values) if pixel_values is not None else None
        inputs_embeds = self.merge_image_embeds(input_ids, image_embeds)
        tok = self.lm.tokenizer
        return self.lm.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.lm.stop_token_ids,
            pad_token_id=tok.pad_token_id,
        )


def merge_lora(vlm: VisionLanguageModel) -> None:
    """Merge LoRA adapters into the LM's weights (in place), for layouts that have no adapters."""
    from peft import PeftModel

    if isinstance(vlm.lm.model, PeftModel):
        vlm.lm.model = vlm.lm.model.merge_and_unload()
