"""Each vision family's pretraining objective: a module whose forward is the loss of a batch.

The objective owns what pretraining adds around the vision tower (a text tower, projections, an
EMA teacher, label heads); only the tower is saved. The losses are plain functions:

- ``clip_loss``: softmax image-caption contrastive loss, both directions (CLIP);
- ``siglip_loss``: sigmoid loss over every image-caption pair (SigLIP);
- ``masked_feature_loss``: the student regresses, at masked patches, what an EMA teacher sees
  there unmasked (DINOv2's masked-patch term in the data2vec form, see ``DinoObjective``);
- ``supervised_loss``: multi-label presence of each colour x shape, plus the count (ViT-IN21k).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from msl_ablate.data.world import MAX_OBJECTS
from msl_ablate.pretrain.scenes import CATEGORIES, SceneBatch


def pooled(out) -> torch.Tensor:
    """``(B, D)``: a transformers vision output's pooled vector (CLS, MAP head), else the mean."""
    if getattr(out, "pooler_output", None) is not None:
        return out.pooler_output
    return out.last_hidden_state.mean(dim=1)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor):
    """InfoNCE over ``(B, E)`` image and caption embeddings, image->text and text->image."""
    image_embeds, text_embeds = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_embeds @ text_embeds.T  # (B, B)
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def siglip_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, t: torch.Tensor, b: torch.Tensor
):
    """Sigmoid loss: every ``(image, caption)`` pair is a binary match / no-match question."""
    image_embeds, text_embeds = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    logits = t.exp() * image_embeds @ text_embeds.T + b  # (B, B)
    labels = 2 * torch.eye(len(logits)) - 1  # +1 on the diagonal, -1 elsewhere
    return -F.logsigmoid(labels * logits).sum() / len(logits)


def masked_feature_loss(
    predicted: torch.Tensor, teacher_layers: tuple[torch.Tensor, ...], mask: torch.Tensor
) -> torch.Tensor:
    """MSE at the masked patches between the student's ``(B, N, D)`` predictions and the target.

    The target is the average of the teacher's last layers ``(B, N, D)``, each normalised per
    image and channel over its patches (data2vec), so it cannot be one constant vector.
    """
    target = sum(F.instance_norm(h.transpose(1, 2)).transpose(1, 2) for h in teacher_layers)
    target = target / len(teacher_layers)  # (B, N, D)
    return F.mse_loss(predicted[mask], target[mask])  # mask: (B, N) -> (M, D)


def supervised_loss(presence_logits, count_logits, batch: SceneBatch) -> torch.Tensor:
    """Binary cross-entropy per colour x shape ``(B, 12)`` plus cross-entropy of the count ``(B, 4)``."""
    presence = F.binary_cross_entropy_with_logits(presence_logits, batch.presence)
    return presence + F.cross_entropy(count_logits, batch.count)


class Objective(nn.Module):
    """A loss around ``self.vision``; ``hard_negatives``: batches of scene / near-copy pairs."""

    hard_negatives = False

    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with the fraction of the run done (EMA updates)."""


class TextTower(nn.Module):
    """A tiny text transformer: token and position embeddings, pre-LN blocks, mean over tokens."""

    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, max_len: int = 64):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.randn(max_len, width) * 0.02)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions[: input_ids.shape[1]]  # (B, L, W)
        x = self.norm(self.encoder(x, src_key_padding_mask=attention_mask == 0))  # (B, L, W)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        return (x * mask).sum(1) / mask.sum(1)  # (B, W)


class ContrastiveObjective(Objective):
    """Image-caption pretraining: the vision tower against a tiny text tower (CLIP or SigLIP).

    Args:
        vision: The transformers vision tower.
        zoo_dir: The zoo, whose tokenizer (``models.zoo.ensure_tokenizer``) reads captions.
        embed_dim: Width of the shared image-text embedding.
        text_width: Width of the text tower.
        text_layers: Blocks of the text tower.
        text_heads: Attention heads of the text tower.
        hard_negatives: Pair each scene with a near copy in the batch (``scenes.perturb``).
    """

    def __init__(
        self,
        vision: nn.Module,
        zoo_dir: Path,
        embed_dim: int = 128,
        text_width: int = 128,
        text_layers: int = 1,
        text_heads: int = 4,
        hard_negatives: bool = True,
    ):
        from transformers import AutoTokenizer

        from msl_ablate.models.zoo import ensure_tokenizer

        super().__init__()
        self.vision = vision
        self.hard_negatives = hard_negatives
        self.tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(zoo_dir))
        self.text = TextTower(len(self.tokenizer), text_width, text_layers, text_heads)
        self.image_proj = nn.Linear(vision.config.hidden_size, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_width, embed_dim, bias=False)

    def embed(self, batch: SceneBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, E)`` image embeddings and ``(B, E)`` caption embeddings."""
        image = self.image_proj(pooled(self.vision(pixel_values=batch.pixel_values)))
        max_length = self.text.positions.shape[0]
        tokens = self.tokenizer(
            batch.captions,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        text = self.text_proj(self.text(tokens.input_ids, tokens.attention_mask))
        return image, text


class ClipObjective(ContrastiveObjective):
    """CLIP: softmax contrastive loss with a learnable temperature (initially 0.07)."""

    def __init__(self, vision: nn.Module, zoo_dir: Path, **kwargs):
        super().__init__(vision, zoo_dir, **kwargs)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, batch: SceneBatch) -> torch.Tensor:
        return clip_loss(*self.embed(batch), self.logit_scale)


class SiglipObjective(ContrastiveObjective):
    """SigLIP: sigmoid loss with a learnable temperature ``t`` and bias ``b``.

    The paper starts at t = 10 and b = -10, a prior for its ~32k negatives per image. The zoo's
    batches hold ~32 scenes: with b = -10 the colour probe did not beat random init within 300
    steps, with b = -5 it did, so that is the default here (``init_b`` sets it).
    """

    def __init__(
        self, vision: nn.Module, zoo_dir: Path, init_t: float = 10.0, init_b: float = -5.0, **kwargs
    ):
        super().__init__(vision, zoo_dir, **kwargs)
        self.t = nn.Parameter(torch.tensor(math.log(init_t)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def forward(self, batch: SceneBatch) -> torch.Tensor:
        return siglip_loss(*self.embed(batch), self.t, self.b)


class DinoObjective(Objective):
    """Self-distillation for the DINOv2 family: masked-patch prediction against an EMA teacher.

    The student sees the scene with a fraction of its patches replaced by the mask token and
    predicts, at those patches, the teacher's features of the whole scene; the teacher is an EMA
    of the student. No text, no labels, and no augmentation (colour jitter would erase colour,
    flips left/right). DINOv2 pairs this term (iBOT) with DINO's CLS loss across views; at this
    size and budget that cross-view term collapsed to a constant within a minute, while the
    regression form (data2vec) keeps learning, so it alone is used.

    Args:
        vision: A transformers vision tower whose forward takes ``bool_masked_pos`` (DINOv2).
        zoo_dir: Unused (no text).
        mask_ratio: Fraction of the student's patches replaced by the mask token.
        top_k: Teacher layers averaged into the target.
        momentum: EMA momentum of the teacher at the start (rises to 1 along a cosine).
    """

    def __init__(
        self,
        vision: nn.Module,
        zoo_dir: Path,
        mask_ratio: float = 0.5,
        top_k: int = 2,
        momentum: float = 0.99,
    ):
        super().__init__()
        self.vision = vision
        self.predictor = nn.Linear(vision.config.hidden_size, vision.config.hidden_size)
        self.teacher = copy.deepcopy(vision).requires_grad_(False)
        self.mask_ratio = mask_ratio
        self.top_k = top_k
        self.base_momentum = momentum

    def forward(self, batch: SceneBatch) -> torch.Tensor:
        pixels = batch.pixel_values  # (B, 3, S, S)
        with torch.no_grad():
            out = self.teacher(pixel_values=pixels, output_hidden_states=True)
        n_patches = self.vision.embeddings.patch_embeddings.num_patches
        # Patches come last, after the prefix tokens (CLS, registers): (B, N, D) per layer.
        teacher_layers = tuple(h[:, -n_patches:] for h in out.hidden_states[-self.top_k :])
        n_masked = max(1, round(self.mask_ratio * n_patches))
        mask = torch.rand(len(pixels), n_patches).argsort(dim=1) < n_masked  # (B, N)
        tokens = self.vision(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state
        predicted = self.predictor(tokens[:, -n_patches:])  # (B, N, D)
        return masked_feature_loss(predicted, teacher_layers, mask)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        m = 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2
        for p_s, p_t in zip(self.vision.parameters(), self.teacher.parameters(), strict=True):
            p_t.mul_(m).add_(p_s.detach(), alpha=1 - m)


class SupervisedObjective(Objective):
    """ViT-IN21k-like supervised pretraining: linear heads on the pooled token, discarded after."""

    def __init__(self, vision: nn.Module, zoo_dir: Path):
        super().__init__()
        self.vision = vision
        self.presence_head = nn.Linear(vision.config.hidden_size, len(CATEGORIES))
        self.count_head = nn.Linear(vision.config.hidden_size, MAX_OBJECTS)

    def forward(self, batch: SceneBatch) -> torch.Tensor:
        x = pooled(self.vision(pixel_values=batch.pixel_values))  # (B, D)
        return supervised_loss(self.presence_head(x), self.count_head(x), batch)
