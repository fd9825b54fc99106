"""The zoo's LM pretraining: the loss falls, the checkpoint loads back, the card tells the truth."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from msl_ablate.models.lm import build_causal_lm
from msl_ablate.models.zoo import ensure_tokenizer, new_lm_twin
from msl_ablate.pretrain.cards import read_card
from msl_ablate.pretrain.lm import (
    exercise,
    exercise_accuracy,
    pack,
    pretrain_lm_twin,
    scene_documents,
    train_causal_lm,
    train_exercises,
)

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 64}  # fmt: skip


@pytest.fixture(scope="module")
def zoo() -> Path:
    return Path(os.environ["MSL_ABLATE_CACHE"]) / "zoo"


def test_scene_documents_are_deterministic_and_held_out() -> None:
    docs = scene_documents(0, 5)
    assert docs == scene_documents(0, 5)
    assert docs != scene_documents("heldout/0", 5)
    assert docs[0].count("\n") >= 2  # a caption, then questions with their answers


def test_causal_lm_loss_falls_in_a_few_steps(zoo: Path) -> None:
    model, tokenizer = new_lm_twin(zoo, "transformers.PhiForCausalLM", TINY, seed=0)
    rows = pack(tokenizer, scene_documents(0, 200), seq_len=32)
    losses = train_causal_lm(model, rows, steps=12, batch_size=8, lr=3e-3, seed=0)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses


def test_answers_are_whole_tokens_where_the_chat_template_puts_them(zoo: Path) -> None:
    # The template starts an answer on its own line; a tokenizer that only saw " yes" would
    # split it into pieces the LM never met in pretraining ("y" + "es").
    tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(zoo))
    messages = [
        {"role": "user", "content": "Is there a red circle?"},
        {"role": "assistant", "content": "{}"},
    ]
    for answer in ("yes", "no", "red", "circle", "cat", "A", "D", "2"):
        text = tokenizer.apply_chat_template(messages, tokenize=False).replace("{}", answer)
        tokens = tokenizer.tokenize(text)
        start = tokens.index("<|assistant|>") + 2  # after the role and its newline
        assert tokens[start : start + 2] == [answer, "<|end|>"], tokens[start:]


def test_pack_rejects_a_corpus_shorter_than_a_row(zoo: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(zoo))
    with pytest.raises(ValueError, match="fewer than one row of 4096"):
        pack(tokenizer, ["A red circle."], seq_len=4096)


@pytest.fixture(scope="module")
def built(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    out = tmp_path_factory.mktemp("zoo-lm")
    model = pretrain_lm_twin(out, zoo, "tiny_test", "transformers.PhiForCausalLM", TINY, steps=8,
                             batch_size=8, lr=3e-3, seq_len=32, documents=200)  # fmt: skip
    return out, model


def test_card_records_the_recipe_and_beats_random_init(built: tuple) -> None:
    card = read_card(built[0])
    assert card is not None and card.name == "tiny_test" and card.kind == "lm"
    assert card.steps == 8 and card.recipe["steps"] == 8 and card.tuning == "base"
    assert len(card.losses) == 8 and card.losses[-1] < card.losses[0]
    (score,) = card.scores
    assert score.name == "heldout_perplexity" and not score.higher_is_better
    assert score.value < score.random_init and score.learned


def test_checkpoint_loads_back_through_the_ordinary_path(built: tuple) -> None:
    folder, trained = built
    lm = build_causal_lm("tiny_test", str(folder), "transformers.PhiForCausalLM", "phi", 0.001)
    ids = torch.tensor([[5, 6, 7, 8]])
    lm.model.eval()
    trained.eval()
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
        torch.testing.assert_close(lm.model(input_ids=ids).logits, expected)
    assert expected.abs().sum() > 0


def test_same_recipe_gives_identical_weights(built: tuple, zoo: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    pretrain_lm_twin(tmp_path, zoo, "tiny_test", "transformers.PhiForCausalLM", TINY, steps=8,
                     batch_size=8, lr=3e-3, seq_len=32, documents=200)  # fmt: skip
    a, b = load_file(built[0] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_exercise_puts_the_loss_on_the_answer_alone(zoo: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(zoo))
    sample = exercise(tokenizer, 'Which option is "red"?\nA. blue\nB. red', "B")
    answer = [t for t in sample.labels if t != -100]
    assert tokenizer.decode(answer) == "B" and sample.input_ids[-len(answer) :] == answer
    assert tokenizer.decode(sample.input_ids[: -len(answer)]).endswith("B. red\n")


def test_exercises_loss_falls_and_unknown_kinds_are_named(zoo: Path) -> None:
    model, tokenizer = new_lm_twin(zoo, "transformers.PhiForCausalLM", TINY, seed=0)
    losses = train_exercises(model, tokenizer, steps=12, batch_size=16, lr=3e-3, seed=0)
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0, losses
    with pytest.raises(
        ValueError, match=r"exercises.kinds \['riddle'\].*known: listed, match, sqa"
    ):
        train_exercises(model, tokenizer, 1, 2, 1e-3, 0, kinds={"riddle": 1.0})


def test_a_misspelt_exercises_key_is_named_before_any_training(zoo: Path, tmp_path) -> None:
    recipe = {"steps": 1, "batch_size": 2, "lr": 1e-3, "corpus_batchsize": 8}
    with pytest.raises(ValueError) as err:
        pretrain_lm_twin(tmp_path, zoo, "tiny_test", "transformers.PhiForCausalLM", TINY,
                         steps=1, batch_size=2, lr=1e-3, exercises=recipe)  # fmt: skip
    message = str(err.value)
    assert "exercises has unknown keys ['corpus_batchsize'] and lacks []" in message
    assert "'corpus_batch_size'" in message
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_exercise_accuracy_reads_the_answer_logit(zoo: Path) -> None:
    # An LM that always puts its weight on the token "B" gets exactly the share of B answers.
    model, tokenizer = new_lm_twin(zoo, "transformers.PhiForCausalLM", TINY, seed=0)
    b = tokenizer("B", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[b] = 1.0
    import random

    from msl_ablate.data.instructions import text_match

    rng = random.Random("heldout-exercises/0/match")
    share = sum(text_match(rng)[1] == "B" for _ in range(200)) / 200
    assert 0.1 < share < 0.5
    assert exercise_accuracy(model, tokenizer, "match", 0) == pytest.approx(share)


def test_a_recipe_with_exercises_scores_each_kind_against_random_init(
    zoo: Path, tmp_path: Path
) -> None:
    exercises = {"steps": 6, "batch_size": 8, "lr": 3e-3, "kinds": {"sqa": 1.0, "match": 1.0}}
    pretrain_lm_twin(tmp_path, zoo, "tiny_test", "transformers.PhiForCausalLM", TINY, steps=4,
                     batch_size=8, lr=3e-3, seq_len=32, documents=200, exercises=exercises)  # fmt: skip
    card = read_card(tmp_path)
    assert card is not None and card.steps == 10 and card.recipe["exercises"] == exercises
    assert len(card.losses) == 10
    names = [s.name for s in card.scores]
    assert names == ["heldout_perplexity", "exercise_accuracy/match", "exercise_accuracy/sqa"]
    assert all(0 <= s.value <= 1 and 0 <= s.random_init <= 1 for s in card.scores[1:])
