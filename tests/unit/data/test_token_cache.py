"""The token table: the same tokens as tokenizing on the fly, built once, keyed by what they
depend on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msl_ablate.data.datamodule import VLMDataModule, resolve_data_root, split_path
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.data.token_cache import TOKENS_DIR, table_key
from msl_ablate.models.assemble import build_vlm
from msl_ablate.utils.errors import DataError


@pytest.fixture
def parts(make_cfg, tmp_path):
    cfg = make_cfg()
    vlm = build_vlm(cfg)
    root = resolve_data_root(cfg.data, cfg.paths.data_dir)

    def datamodule(max_length: int = 10_000, cache=tmp_path / "cache") -> VLMDataModule:
        return VLMDataModule(
            cfg.data, root, "instruct", vlm.lm.tokenizer, vlm.vision.image_transform,
            vlm.num_image_tokens, max_length, 4, token_cache=cache,
        )  # fmt: skip

    return cfg, vlm, root, datamodule


def test_the_table_holds_the_tokens_of_every_record_and_is_built_once(parts, tmp_path, monkeypatch):
    _, vlm, _, datamodule = parts
    cached = datamodule().make_dataset("instruct")
    direct = datamodule(cache=None).make_dataset("instruct")
    assert cached.table is not None and direct.table is None
    for i in range(len(direct)):
        a, b = cached[i], direct[i]
        assert a["input_ids"].tolist() == b["input_ids"].tolist()
        assert a["labels"].tolist() == b["labels"].tolist()
    assert cached.token_lengths() == direct.token_lengths()
    assert len(list((tmp_path / "cache" / TOKENS_DIR).glob("*.npz"))) == 1

    calls = []
    tokenize = LlavaDataset.tokenize
    monkeypatch.setattr(LlavaDataset, "tokenize",
                        lambda self, rec: calls.append(rec) or tokenize(self, rec))  # fmt: skip
    warm = datamodule().make_dataset("instruct")
    assert calls == []  # a warm cache never tokenizes a record
    np.testing.assert_array_equal(warm.table.ids, cached.table.ids)


def test_a_record_longer_than_max_length_is_named_when_read_from_the_table(parts):
    _, _, _, datamodule = parts
    dataset = datamodule().make_dataset("instruct")
    longest = int(np.argmax(dataset.table.lengths()))
    short = datamodule(max_length=int(dataset.table.lengths()[longest]) - 1)
    with pytest.raises(DataError, match=f"record {dataset.records[longest]['id']}: .*max_length"):
        short.make_dataset("instruct")[longest]


def test_the_key_changes_with_the_file_the_template_and_the_image_tokens(parts, tmp_path):
    cfg, vlm, root, _ = parts
    path = split_path(cfg.data, root, "instruct")
    tokenizer = vlm.lm.tokenizer
    key = table_key(path, tokenizer, 16, False)
    assert table_key(path, tokenizer, 16, False) == key
    assert table_key(path, tokenizer, 17, False) != key
    assert table_key(path, tokenizer, 16, True) != key
    edited = tmp_path / "edited.json"
    records = json.loads(path.read_text())
    edited.write_text(json.dumps(records[:-1]))
    assert table_key(edited, tokenizer, 16, False) != key
    template = tokenizer.chat_template
    tokenizer.chat_template = template + " "
    try:
        assert table_key(path, tokenizer, 16, False) != key
    finally:
        tokenizer.chat_template = template
