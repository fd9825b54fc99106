"""Pretrain the tiny zoo's LMs on CPU: a causal LM on the world's synthetic text corpus.

The corpus is made of documents, one per scene: its caption, then questions about it with their
answers, as plain text. A base LM pretrained on it knows the world's words and that an answer
follows from a description, as a real base LM knows language before LLaVA's stages. Held-out
perplexity (documents from a disjoint random stream) against the same shape at random init is
the card's proof that it learned.

A recipe may add **exercises** after that (``exercises: {steps, batch_size, lr, kinds, ...}``): the
corpus's text-only skill questions (which option is a value, is a value among those listed, which
option names a property) with the loss on the answer alone, as a real base LM has done the
exercises of its textbooks. In the corpus an answer is one token of a 150-token document, and the
comparison of a value with each option never left chance there (docs/zoo.md, "Option letters");
the card scores each kind's accuracy against random init.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase, get_cosine_schedule_with_warmup

from msl_ablate.data.conversation import TokenizedSample
from msl_ablate.data.instructions import TEXT_ONLY_WRITERS
from msl_ablate.data.synthetic import QUESTION_WRITERS, caption
from msl_ablate.data.tokens import IGNORE_INDEX
from msl_ablate.data.world import sample_scene
from msl_ablate.models.zoo import new_lm_twin
from msl_ablate.pretrain.cards import Card, Score, Stopwatch, sample_losses, write_card
from msl_ablate.pretrain.chats import collate
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

HELDOUT_DOCUMENTS = 200
HELDOUT_EXERCISES = 200  # per kind
WARMUP_RATIO = 0.05


def scene_documents(seed: int | str, n: int) -> list[str]:
    """``n`` plain-text documents: a scene's caption and the questions it answers, then one
    text-only skill record (an option to match, a value to find in a list) with its answer."""
    rng = random.Random(seed)
    skills = sorted(TEXT_ONLY_WRITERS)
    docs = []
    for i in range(n):
        scene = sample_scene(rng)
        lines = [caption(scene)]
        for writer in QUESTION_WRITERS.values():
            qa = writer(scene, rng)
            if qa is not None:
                lines.append(f"{qa.question}\n{qa.answer}")
        question, answer = TEXT_ONLY_WRITERS[skills[i % len(skills)]](rng)
        lines.append(f"{question}\n{answer}")
        docs.append("\n".join(lines))
    return docs


def pack(tokenizer: PreTrainedTokenizerBase, docs: list[str], seq_len: int) -> torch.Tensor:
    """Documents tokenized, joined with EOS and cut into rows of ``seq_len`` tokens.

    Returns:
        ``(N, seq_len)`` token ids (the tail shorter than a row is dropped).
    """
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"the corpus has {len(ids)} tokens, fewer than one row of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


@torch.no_grad()
def perplexity(model: nn.Module, rows: torch.Tensor, batch_size: int = 32) -> float:
    """Token-level perplexity of ``model`` on ``(N, L)`` rows."""
    model.eval()
    total, count = 0.0, 0
    for batch in rows.split(batch_size):
        out = model(input_ids=batch, labels=batch)
        n = batch.numel() - batch.shape[0]  # predicted tokens: all but each row's first
        total += out.loss.item() * n
        count += n
    return math.exp(total / count)


def optimise(
    step_loss: Callable[[int], torch.Tensor], model: nn.Module, steps: int, lr: float, desc: str
) -> list[float]:
    """AdamW with warm-up and cosine decay, gradients clipped at 1; ``step_loss(step)`` gives
    each step's loss. The zoo's LM pretraining and its tuning stages share it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(
        optimizer, max(1, int(WARMUP_RATIO * steps)), max(1, steps)
    )
    losses = []
    model.train()
    for step in tqdm(range(steps), desc=desc, unit="step", mininterval=5):
        loss = step_loss(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def corpus_loss(
    model: nn.Module, rows: torch.Tensor, batch_size: int, generator: torch.Generator
) -> torch.Tensor:
    """The next-token loss of ``batch_size`` rows of the corpus drawn at random."""
    batch = rows[torch.randint(len(rows), (batch_size,), generator=generator)]  # (B, L)
    return model(input_ids=batch, labels=batch).loss


def train_causal_lm(
    model: nn.Module, rows: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int
) -> list[float]:
    """Next-token training on random batches of ``rows``; returns the loss of every step."""
    generator = torch.Generator().manual_seed(seed)
    return optimise(lambda _: corpus_loss(model, rows, batch_size, generator), model, steps, lr,
                    "zoo LM pretraining")  # fmt: skip


def exercise(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> TokenizedSample:
    """A skill question as the corpus writes it (the answer on the line after the question),
    with the loss on the answer's tokens only."""
    prompt = tokenizer(f"{question}\n", add_special_tokens=False)["input_ids"]
    reply = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return TokenizedSample(prompt + reply, [IGNORE_INDEX] * len(prompt) + reply, 0)


def exercise_kinds(kinds: dict[str, float] | None) -> dict[str, float]:
    """The skill kinds an exercise draws from with their weights (all, equally, by default)."""
    kinds = kinds or dict.fromkeys(sorted(TEXT_ONLY_WRITERS), 1.0)
    unknown = sorted(set(kinds) - set(TEXT_ONLY_WRITERS))
    if unknown:
        raise ValueError(
            f"zoo LM recipe: exercises.kinds {unknown} are not skill kinds; "
            f"known: {', '.join(sorted(TEXT_ONLY_WRITERS))}"
        )
    return kinds


@dataclasses.dataclass(frozen=True)
class ExerciseRecipe:
    """A zoo LM recipe's ``exercises`` (``pretrain_lm_twin``): checked key by key, so a
    misspelt key is named instead of silently ignored."""

    steps: int
    batch_size: int
    lr: float
    kinds: dict[str, float] | None = None  # skill kind -> weight; None: all, equally
    corpus_batch_size: int = 0  # corpus rows (causal-LM loss) in each step

    @classmethod
    def of(cls, node: dict[str, Any], name: str) -> ExerciseRecipe:
        """Raises ValueError naming unknown and missing keys of ``node``."""
        keys = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        unknown = sorted(set(node) - set(keys))
        missing = [k for k in required if k not in node]
        if unknown or missing:
            raise ValueError(
                f"zoo LM recipe {name!r}: exercises has unknown keys {unknown} and lacks "
                f"{missing}; its keys are {keys} ({', '.join(required)} required)"
            )
        return cls(**node)


def train_exercises(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    kinds: dict[str, float] | None = None,
    rows: torch.Tensor | None = None,
    corpus_batch_size: int = 0,
) -> list[float]:
    """Answer-only training on skill questions drawn afresh each step, plus the causal-LM loss
    of ``corpus_batch_size`` rows of the corpus (``rows``) if given: answer-only steps alone
    make the LM forget its text (held-out perplexity 526 -> 6795 in 600 steps, measured).
    Returns the loss of every step."""
    weights = exercise_kinds(kinds)
    rng = random.Random(f"exercises/{seed}")
    generator = torch.Generator().manual_seed(seed)
    names = list(weights)

    def step_loss(_: int) -> torch.Tensor:
        drawn = rng.choices(names, [weights[n] for n in names], k=batch_size)
        batch = collate(
            [exercise(tokenizer, *TEXT_ONLY_WRITERS[n](rng)) for n in drawn],
            tokenizer.pad_token_id,
        )
        loss = model(**batch).loss
        if rows is not None and corpus_batch_size:
            loss = loss + corpus_loss(model, rows, corpus_batch_size, generator)
        return loss

    return optimise(step_loss, model, steps, lr, "zoo LM exercises")


@torch.no_grad()
def exercise_accuracy(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, kind: str, seed: int | str
) -> float:
    """Share of held-out questions of one skill kind whose answer gets the highest logit among
    the kind's answers (letters, or yes and no) after the question."""
    rng = random.Random(f"heldout-exercises/{seed}/{kind}")
    samples = [exercise(tokenizer, *TEXT_ONLY_WRITERS[kind](rng)) for _ in range(HELDOUT_EXERCISES)]
    first = [next(t for t in s.labels if t != IGNORE_INDEX) for s in samples]
    answers = torch.tensor(sorted(set(first)))
    # The prompt: everything before the answer's first token.
    prompts = [
        TokenizedSample(s.input_ids[: s.labels.index(a)], [IGNORE_INDEX] * s.labels.index(a), 0)
        for s, a in zip(samples, first, strict=True)
    ]
    model.eval()
    right = 0
    for start in range(0, len(prompts), 50):
        batch = collate(prompts[start : start + 50], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        last = logits[torch.arange(len(logits)), batch["attention_mask"].sum(1) - 1]  # (B, V)
        picked = answers[last[:, answers].argmax(-1)].tolist()
        right += sum(p == a for p, a in zip(picked, first[start : start + 50], strict=True))
    return right / len(samples)


def pretrain_lm_twin(
    out_dir: Path,
    zoo_dir: Path,
    name: str,
    model_class: str,
    config: dict,
    steps: int,
    batch_size: int,
    lr: float,
    seq_len: int = 128,
    documents: int = 4000,
    seed: int = 0,
    objective: str = "causal_lm",
    exercises: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a zoo LM: random init, causal-LM pretraining on the corpus, the exercises if the
    recipe has them, then save with a card.

    Args:
        out_dir: Folder to write (model, tokenizer, ``card.json``).
        zoo_dir: The zoo (its tokenizer).
        name: The recipe's name.
        model_class: Dotted transformers class, e.g. ``transformers.PhiForCausalLM``.
        config: The model config's sizes.
        steps: Optimisation steps.
        batch_size: Rows per step.
        lr: Peak learning rate (warm-up, then cosine decay).
        seq_len: Tokens per row.
        documents: Training documents drawn from the world (one per scene).
        seed: Seed of the init, the corpus and the batch order.
        objective: Only ``causal_lm`` (the recipe names it for the card).
        exercises: ``steps``, ``batch_size``, ``lr`` and optionally ``kinds`` (skill kind ->
            weight) and ``corpus_batch_size`` (corpus rows per step) of the answer-only training
            on skill questions after pretraining; None: none.

    Returns:
        The trained model (as saved).
    """
    if objective != "causal_lm":
        raise ValueError(f"zoo LM recipe {name!r}: objective must be causal_lm, got {objective!r}")
    drills = ExerciseRecipe.of(exercises, name) if exercises else None
    clock = Stopwatch()
    model, tokenizer = new_lm_twin(zoo_dir, model_class, config, seed)
    rows = pack(tokenizer, scene_documents(seed, documents), seq_len)
    heldout = pack(tokenizer, scene_documents(f"heldout/{seed}", HELDOUT_DOCUMENTS), seq_len)
    random_ppl = perplexity(model, heldout)
    kinds = sorted(exercise_kinds(drills.kinds)) if drills else []
    random_acc = {k: exercise_accuracy(model, tokenizer, k, seed) for k in kinds}
    log.info("Pretraining zoo LM %s: %d steps on %d rows of %d tokens", name, steps, *rows.shape)
    losses = train_causal_lm(model, rows, steps, batch_size, lr, seed)
    if drills:
        log.info("Zoo LM %s: %d steps of exercises", name, drills.steps)
        losses += train_exercises(
            model, tokenizer, drills.steps, drills.batch_size, drills.lr, seed, drills.kinds,
            rows, drills.corpus_batch_size,
        )  # fmt: skip
    ppl = perplexity(model, heldout)
    scores = [Score("heldout_perplexity", round(ppl, 3), round(random_ppl, 3), False)]
    for k in kinds:
        acc = exercise_accuracy(model, tokenizer, k, seed)
        scores.append(Score(f"exercise_accuracy/{k}", round(acc, 3), round(random_acc[k], 3)))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    recipe = {
        "model_class": model_class, "config": config, "steps": steps, "batch_size": batch_size,
        "lr": lr, "seq_len": seq_len, "documents": documents, "exercises": exercises,
    }  # fmt: skip
    card = Card(
        name=name,
        kind="lm",
        objective=objective,
        recipe=recipe,
        steps=steps + (drills.steps if drills else 0),
        seed=seed,
        losses=sample_losses(losses),
        build_seconds=clock.seconds,
        scores=scores,
        tuning="base",
    )
    write_card(out_dir, card)
    log.info("Zoo LM %s: held-out perplexity %.2f (random init %.2f)", name, ppl, random_ppl)
    return model
