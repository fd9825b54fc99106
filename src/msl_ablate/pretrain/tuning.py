"""Post-train a zoo LM into an instruct variant: SFT in its own chat template, then DPO or safe DPO.

A variant is a recipe whose ``base`` is another zoo recipe (a base LM or an SFT variant), built
through the same resolve path as any member, so a changed base is a new variant. The builder:

1. loads the base and gives it the variant's chat style (``models/chat_templates.CHAT_STYLES``):
   the template, its new special tokens (embeddings resized) and its end-of-turn token as EOS;
2. **SFT** on chat records (``pretrain/chats.py``) rendered through that template by the data
   pipeline's own masking (``data/conversation.py``): loss on the answer and the EOS after it;
3. for ``dpo`` and ``safe_dpo``, **DPO** on preference pairs with the SFT model frozen as the
   reference; ``safe_dpo`` adds requests of the harmful class whose chosen answer is the refusal.

Each variant starts with the SFT stage because it has a template of its own (a DPO variant of
``tiny_phi_sft`` re-learns the turn format in ChatML); that SFT model is the DPO reference.
The card scores the variant against the model it started from (``Score.against``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import get_class
from torch import nn
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase

from msl_ablate.data.tokens import IGNORE_INDEX
from msl_ablate.models.activations import fuse_activation
from msl_ablate.models.chat_templates import CHAT_STYLES, ChatStyle
from msl_ablate.models.zoo import resolve_checkpoint
from msl_ablate.pretrain.cards import Card, Stopwatch, sample_losses, write_card
from msl_ablate.pretrain.chats import Chat, chats, collate, encode
from msl_ablate.pretrain.lm import optimise
from msl_ablate.pretrain.tuning_scores import answer_logps, preference_scores, sft_scores
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

# The card's `tuning` of each objective (config/enums.py: Tuning); DPO stands in for RLHF.
TUNING = {"sft": "sft", "dpo": "dpo", "safe_dpo": "safe_rlhf"}


@dataclass(frozen=True)
class PreferenceStage:
    """The DPO stage of a recipe (``dpo:``); ``safe_dpo`` mixes in harmful requests.

    Attributes:
        steps: Optimisation steps.
        batch_size: Preference pairs per step.
        lr: Peak learning rate.
        beta: DPO's inverse temperature: how far the policy may move from the reference.
        sft_weight: Weight of the NLL of the chosen answer added to the DPO loss (RPO; 0: pure
            DPO). It keeps the chosen answer likely, not only likelier than the rejected one.
        harmful_share: Share of harmful requests among the pairs (``safe_dpo`` only).
        over_refusal_share: Share of benign pairs whose rejected answer is the refusal, so that
            a safe variant keeps answering the questions (``safe_dpo`` only).
    """

    steps: int
    batch_size: int = 16
    lr: float = 5.0e-4
    beta: float = 0.1
    sft_weight: float = 0.0
    harmful_share: float = 0.0
    over_refusal_share: float = 0.0


def load_base(
    zoo_dir: Path, base: dict[str, Any]
) -> tuple[nn.Module, PreTrainedTokenizerBase, Path]:
    """The base member (built first if missing, as ``offline_twins`` would), loaded for training."""
    spec = {"name": base["name"], "checkpoint": None, "twin": base}
    folder = Path(resolve_checkpoint(spec, True, zoo_dir))
    cls = get_class(base["model_class"])
    config = cls.config_class.from_pretrained(folder)
    original = fuse_activation(config)  # the same function, faster to tune
    model = cls.from_pretrained(folder, config=config)
    if original is not None:
        model.config.hidden_act = original  # the tuned member's config names the base's
    return model, AutoTokenizer.from_pretrained(folder), folder


def restyle(model: nn.Module, tokenizer: PreTrainedTokenizerBase, style: ChatStyle) -> None:
    """Give a model and its tokenizer a chat style: template, new tokens (resized), EOS."""
    new = [t for t in style.special_tokens if t not in tokenizer.get_vocab()]
    # add_tokens keeps the tokenizer's other special tokens (<image>); add_special_tokens would not.
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in new], True)
    tokenizer.eos_token = style.eos_token
    tokenizer.chat_template = style.template
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    probe = Chat(
        "A red circle at the top left.\nWhat colour is the circle?", "red", "blue", "colour"
    )
    labelled = [t for t in encode(tokenizer, probe, "red").labels if t != IGNORE_INDEX]
    eos = tokenizer.eos_token_id
    if eos not in labelled or tokenizer.decode(labelled[: labelled.index(eos)]).strip() != "red":
        raise ValueError(
            f"chat style with EOS {style.eos_token!r}: an answer must be followed by EOS in the "
            f"labels, got {tokenizer.decode(labelled)!r} (models/chat_templates.py)"
        )


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DPO loss (Rafailov et al. 2023) of ``(B,)`` summed answer log-probabilities.

    Written here rather than taken from TRL: TRL is not a dependency, and its ``DPOTrainer``
    wants the HF ``Trainer`` loop and a ``datasets.Dataset``, for what is these few lines.

    Returns:
        The mean loss ``-log sigmoid(beta * (policy margin - reference margin))``, and the
        implicit rewards' accuracy (the share of pairs whose chosen reward is the larger).
    """
    chosen_reward = beta * (policy_chosen - reference_chosen)  # (B,)
    rejected_reward = beta * (policy_rejected - reference_rejected)  # (B,)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return loss, (chosen_reward > rejected_reward).float().mean()


def lazily(encode_record: Callable[[Chat], Any], records: list[Chat]) -> Callable[[int], Any]:
    """Record ``i`` encoded on first use, then kept: a short run (tests cap steps at 3) encodes
    only the records it draws. Drawing indices with ``rng.sample(range(n), k)`` picks the same
    records as sampling the encoded list would, so the batches are those of encoding them all."""
    cache: dict[int, Any] = {}

    def get(i: int) -> Any:
        if i not in cache:
            cache[i] = encode_record(records[i])
        return cache[i]

    return get


def train_sft(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: list[Chat],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> list[float]:
    """Supervised fine-tuning on the records' chosen answers; returns every step's loss."""
    rng = random.Random(seed)
    sample = lazily(lambda r: encode(tokenizer, r, r.chosen), records)

    def step_loss(_: int) -> torch.Tensor:
        picked = rng.sample(range(len(records)), batch_size)
        return model(**collate([sample(i) for i in picked], tokenizer.pad_token_id)).loss

    return optimise(step_loss, model, steps, lr, "zoo LM tuning (SFT)")


def train_dpo(
    model: nn.Module,
    reference: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: list[Chat],
    stage: PreferenceStage,
    seed: int,
) -> list[float]:
    """DPO (plus ``sft_weight`` x the chosen answers' NLL) against a frozen reference."""
    rng = random.Random(seed)
    pair = lazily(
        lambda r: (encode(tokenizer, r, r.chosen), encode(tokenizer, r, r.rejected)), records
    )
    reference.eval().requires_grad_(False)

    def step_loss(_: int) -> torch.Tensor:
        picked = rng.sample(range(len(records)), stage.batch_size)
        chosen, rejected = zip(*[pair(i) for i in picked], strict=True)
        batch = collate([*chosen, *rejected], tokenizer.pad_token_id)  # (2B, L): chosen first
        with torch.no_grad():
            ref_chosen, ref_rejected = answer_logps(reference, batch).chunk(2)
        pol_chosen, pol_rejected = answer_logps(model, batch).chunk(2)
        loss, _ = dpo_loss(pol_chosen, pol_rejected, ref_chosen, ref_rejected, stage.beta)
        if stage.sft_weight:
            n_chosen = (batch["labels"][: len(chosen), 1:] != IGNORE_INDEX).sum()
            loss = loss - stage.sft_weight * pol_chosen.sum() / n_chosen
        return loss

    return optimise(step_loss, model, stage.steps, stage.lr, "zoo LM tuning (DPO)")


def tune_lm_twin(
    out_dir: Path,
    zoo_dir: Path,
    name: str,
    base: dict[str, Any],
    objective: str,
    model_class: str,
    chat_style: str,
    steps: int,
    batch_size: int,
    lr: float,
    chats_per_stage: int = 3000,
    dpo: dict[str, Any] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Build an instruct variant of a zoo LM: its chat style, SFT, then DPO; save with a card.

    Args:
        out_dir: Folder to write (model, tokenizer with the variant's template, ``card.json``).
        zoo_dir: The zoo (where the base is, or is built).
        name: The recipe's name.
        base: The recipe of the member it starts from (composed in: ``/zoo/lm/<base>@base``).
        objective: ``sft``, ``dpo`` or ``safe_dpo`` (card tuning ``sft``/``dpo``/``safe_rlhf``).
        model_class: The base's transformers class, repeated so that options can check it.
        chat_style: A key of ``models.chat_templates.CHAT_STYLES``.
        steps: SFT steps in the variant's template.
        batch_size: Chats per SFT step.
        lr: Peak SFT learning rate.
        chats_per_stage: Training records drawn from the world per stage.
        dpo: The preference stage (``PreferenceStage`` fields); required unless ``sft``.
        seed: Seed of the new embeddings, the records and the batch order.

    Returns:
        The tuned model (as saved).

    Raises:
        ValueError: An unknown objective or chat style, a ``dpo`` section that does not fit the
            objective, or a ``model_class`` that is not the base's.
    """
    where = f"conf/zoo/lm/{name}.yaml"
    if objective not in TUNING or chat_style not in CHAT_STYLES:
        raise ValueError(
            f"objective={objective!r} must be one of {sorted(TUNING)} and chat_style="
            f"{chat_style!r} one of {sorted(CHAT_STYLES)} ({where})"
        )
    if (objective == "sft") != (dpo is None) or model_class != base["model_class"]:
        raise ValueError(
            f"objective={objective!r} takes a `dpo:` section unless it is sft (got {dpo!r}), and "
            f"model_class={model_class} must be the base's {base['model_class']} ({where})"
        )
    stage = PreferenceStage(**dpo) if dpo is not None else None
    safe = objective == "safe_dpo"
    mixes = stage is not None and (stage.harmful_share > 0 or stage.over_refusal_share > 0)
    if stage is not None and (mixes != safe or (safe and stage.harmful_share <= 0)):
        raise ValueError(
            f"dpo.harmful_share must be > 0 for safe_dpo, and it and dpo.over_refusal_share 0 "
            f"for dpo; got {dpo} for objective={objective} ({where})"
        )
    clock = Stopwatch()
    model, tokenizer, parent = load_base(zoo_dir, base)
    torch.manual_seed(seed)
    restyle(model, tokenizer, CHAT_STYLES[chat_style])
    start = copy.deepcopy(model).eval()
    log.info("Tuning zoo LM %s from %s: %s in %s style", name, parent.name, objective, chat_style)
    losses = train_sft(model, tokenizer, chats(seed, chats_per_stage), steps, batch_size, lr, seed)
    if stage is not None:
        reference = copy.deepcopy(model)
        shares = stage.harmful_share, stage.over_refusal_share
        records = chats(f"dpo/{seed}", chats_per_stage, *shares)
        losses += train_dpo(model, reference, tokenizer, records, stage, seed)
    scores = sft_scores(model, start, tokenizer, seed, base["name"])
    if stage is not None:
        scores += preference_scores(model, reference, tokenizer, seed, safe, f"{name} after SFT")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    recipe = {
        "base": base, "objective": objective, "model_class": model_class,
        "chat_style": chat_style, "steps": steps, "batch_size": batch_size, "lr": lr,
        "chats_per_stage": chats_per_stage, "dpo": dpo,
    }  # fmt: skip
    card = Card(
        name=name,
        kind="lm",
        objective=objective,
        recipe=recipe,
        steps=steps + (stage.steps if stage else 0),
        seed=seed,
        losses=sample_losses(losses),
        build_seconds=clock.seconds,
        scores=scores,
        parent=parent.name,
        tuning=TUNING[objective],
    )
    write_card(out_dir, card)
    log.info("Zoo LM %s tuned in %.0f s: %s", name, card.build_seconds, scores)
    return model
