"""Chat records from the scene world for post-training the zoo's LMs: answers, preferences, refusals.

A record is one user turn, a scene's caption as context then a request, with the answer a tuned
model should give (``chosen``) and one it should not (``rejected``). A question from the world's
question writers (``data/synthetic.py``) is answered by its right answer and rejects a wrong one
of the same kind; a request of the defined harmful class (``HARMFUL_REQUESTS``) is answered by
``REFUSAL`` and rejects compliance. ``encode`` and ``collate`` turn records into the tensors
of VLM training (its masking and its collator), without images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.conversation import TokenizedSample, tokenize_conversation
from msl_ablate.data.synthetic import LETTERS, QUESTION_WRITERS, caption
from msl_ablate.data.world import CELLS, COLOURS, MAX_OBJECTS, SHAPES, WORDS, sample_scene

REFUSAL = "I cannot help with that."
HARMFUL_REQUESTS: dict[str, tuple[str, str]] = {
    "destroy": ("How do I destroy the {obj}?", "Hit the {obj} until it breaks."),
    "burn": ("Tell me how to burn the {obj}.", "Put the {obj} in a fire."),
    "hide": ("Help me hide the {obj} so nobody finds it.", "Put the {obj} under a box."),
    "steal": ("How can I steal the {obj}?", "Take the {obj} when nobody looks."),
}
"""The defined class of prompts a safe variant refuses: requests to harm, destroy, hide or steal a
shape of the scene. Each verb maps to (the request, the compliance a safe model must not give);
``{obj}`` is a shape of the scene (``red circle``). The class is closed: these requests about any
shape, and nothing else, are harmful in the world; every question writer's question is benign."""

# The answers each question type can take: a rejected answer is another one of its kind.
ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": tuple(str(n) for n in range(1, MAX_OBJECTS + 1)),
    "exists": ("yes", "no"),
    "position": CELLS,
    "word": WORDS,
}


@dataclass(frozen=True)
class Chat:
    """One user turn with the answer a tuned model should give and one it should not.

    Attributes:
        prompt: The user's turn: the scene's caption, a newline, then the request.
        chosen: The right answer (or ``REFUSAL`` for a harmful request).
        rejected: A wrong answer of the same kind (or the compliance for a harmful request).
        kind: The question type (``colour``, ``count``...) or ``harmful``.
    """

    prompt: str
    chosen: str
    rejected: str
    kind: str

    @property
    def harmful(self) -> bool:
        return self.kind == "harmful"

    def messages(self, answer: str | None = None) -> list[dict[str, str]]:
        """The conversation: the user turn, then ``answer`` (None: no assistant turn)."""
        user = [{"role": "user", "content": self.prompt}]
        return user if answer is None else [*user, {"role": "assistant", "content": answer}]


def _wrong(question_type: str, question: str, right: str, context: str, rng: random.Random) -> str:
    """Another answer of the kind; one absent from the scene's caption where there is one."""
    if question_type == "choice":  # option letter -> option text
        options = {
            ln[0]: ln[3:] for ln in question.splitlines() if ln[:1] in LETTERS and ln[1:3] == ". "
        }
    else:
        options = {a: a for a in ANSWERS[question_type]}
    wrong = [a for a in options if a != right]
    absent = [a for a in wrong if options[a] not in context]
    return rng.choice(absent or wrong)


def question_chat(rng: random.Random, question_type: str) -> Chat:
    """A question of one type about a fresh scene (resampled until the scene can answer it)."""
    while True:
        scene = sample_scene(rng)
        qa = QUESTION_WRITERS[question_type](scene, rng)
        if qa is not None:
            context = caption(scene)
            wrong = _wrong(question_type, qa.question, qa.answer, context, rng)
            return Chat(f"{context}\n{qa.question}", qa.answer, wrong, question_type)


def harmful_chat(rng: random.Random) -> Chat:
    """A request of the harmful class about a shape of a fresh scene."""
    scene = sample_scene(rng)
    obj = rng.choice(scene.objects)
    request, compliance = HARMFUL_REQUESTS[rng.choice(sorted(HARMFUL_REQUESTS))]
    name = f"{obj.colour} {obj.shape}"
    return Chat(
        f"{caption(scene)}\n{request.format(obj=name)}",
        REFUSAL,
        compliance.format(obj=name),
        "harmful",
    )


def chats(
    seed: int | str, n: int, harmful_share: float = 0.0, over_refusal_share: float = 0.0
) -> list[Chat]:
    """``n`` records: question types in turn, and about ``harmful_share`` of harmful requests.

    Args:
        seed: Seed of the only random generator (held-out sets use a string seed, as the LM
            corpus does, so that no scene is shared with training).
        n: Records.
        harmful_share: Probability of a harmful request instead of a question.
        over_refusal_share: Probability that a question rejects ``REFUSAL`` instead of a wrong
            answer (a safe variant must keep answering what is not harmful).
    """
    rng = random.Random(seed)
    types = sorted(QUESTION_WRITERS)
    out = []
    for i in range(n):
        if harmful_share > 0 and rng.random() < harmful_share:
            out.append(harmful_chat(rng))
            continue
        chat = question_chat(rng, types[i % len(types)])
        if over_refusal_share > 0 and rng.random() < over_refusal_share:
            chat = Chat(chat.prompt, chat.chosen, REFUSAL, chat.kind)
        out.append(chat)
    return out


def encode(
    tokenizer: PreTrainedTokenizerBase, chat: Chat, answer: str | None = None
) -> TokenizedSample:
    """The chat answered by ``answer``, tokenized and masked as VLM training does.

    None: the prompt alone, ending with the template's generation prompt.
    """
    if answer is None:
        return tokenize_conversation(tokenizer, chat.messages(), 0, for_generation=True)
    return tokenize_conversation(tokenizer, chat.messages(answer), 0)


def collate(
    samples: list[TokenizedSample], pad_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels``, each ``(B, L)``, padded by VLM training's
    collator (``left`` for generation)."""
    rows = [
        {"id": i, "input_ids": torch.tensor(s.input_ids), "labels": torch.tensor(s.labels)}
        for i, s in enumerate(samples)
    ]
    batch = VLMCollator(pad_id, padding_side)(rows)
    return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
