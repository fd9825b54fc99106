"""Merging image embeddings into the text sequence, and the count check."""

from __future__ import annotations

import pytest
import torch

from msl_ablate.models.assemble import build_vlm


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    from msl_ablate.config.compose import compose

    return build_vlm(compose([f"paths.root={tmp_path_factory.mktemp('root')}"]))


def test_merge_places_image_embeds_at_placeholders(vlm):
    n = vlm.num_image_tokens
    assert n == 16  # tiny_siglip: (64 // 16) ** 2
    img = vlm.image_token_id
    input_ids = torch.tensor([[7, *[img] * n, 8, 9], [7, 8, *[img] * n, 9]])  # (2, n + 3)
    image_embeds = torch.randn(2, n, vlm.lm.embed_dim)
    merged = vlm.merge_image_embeds(input_ids, image_embeds)
    text = vlm.lm.embed_tokens(input_ids)
    assert torch.equal(merged[0, 1 : 1 + n], image_embeds[0])
    assert torch.equal(merged[1, 2 : 2 + n], image_embeds[1])
    assert torch.equal(merged[0, [0, n + 1, n + 2]], text[0, [0, n + 1, n + 2]])
    assert torch.equal(merged[1, [0, 1, n + 2]], text[1, [0, 1, n + 2]])


def test_count_mismatch_names_both_counts(vlm):
    n = vlm.num_image_tokens
    input_ids = torch.tensor([[7, *[vlm.image_token_id] * (n - 1), 8]])
    with pytest.raises(
        RuntimeError, match=f"{n - 1} placeholder tokens.*{n} image features.*max_length"
    ):
        vlm.merge_image_embeds(input_ids, torch.zeros(1, n, vlm.lm.embed_dim))


def test_forward_loss_only_from_labels(vlm):
    n = vlm.num_image_tokens
    input_ids = torch.tensor([[7, *[vlm.image_token_id] * n, 8, 9]])
    labels = torch.full_like(input_ids, -100)
    labels[0, -1] = 9
    pixels = torch.zeros(1, 3, 64, 64)
    out = vlm(input_ids, torch.ones_like(input_ids), labels, pixel_values=pixels)
    assert out.logits.shape == (1, len(vlm.lm.tokenizer))  # only where a label follows
    full = vlm(input_ids, torch.ones_like(input_ids), pixel_values=pixels).logits
    assert full.shape == (1, n + 3, len(vlm.lm.tokenizer))
    torch.testing.assert_close(out.logits, full[0, -2:-1], rtol=0, atol=1e-5)
    expected = torch.nn.functional.cross_entropy(full[0, -2:-1], torch.tensor([9]))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_loss_is_transformers_causal_lm_loss_on_a_padded_batch(stage_batch):
    _, vlm, batch = stage_batch("finetune", n=6)
    embeds = vlm.merge_image_embeds(batch["input_ids"], vlm.encode_images(batch["pixel_values"]))
    # transformers computes every position's logits and shifts the labels itself.
    reference = vlm.lm.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                             labels=batch["labels"])  # fmt: skip
    ours = vlm(**batch)
    assert ours.logits.shape[0] == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(ours.loss, reference.loss, rtol=1e-6, atol=0)
    n = torch.tensor(1000)
    summed = vlm.lm.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                          labels=batch["labels"], num_items_in_batch=n)  # fmt: skip
    torch.testing.assert_close(
        vlm(**batch, num_items_in_batch=n).loss, summed.loss, rtol=1e-6, atol=0
    )


def test_text_only_batch_needs_no_images(vlm):
    input_ids = torch.tensor([[7, 8, 9]])
    out = vlm(input_ids, torch.ones_like(input_ids), labels=input_ids)
    assert torch.isfinite(out.loss)
    with pytest.raises(
        RuntimeError, match="1 placeholder tokens in input_ids but 0 image features"
    ):
        vlm(torch.tensor([[7, vlm.image_token_id]]), torch.ones(1, 2, dtype=torch.long))
