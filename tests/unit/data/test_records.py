"""LLaVA data as released: every record shape of the 558k / 665k files normalised, every problem
named with its record, by the loader and by ``msl-ablate data check``; a mixed batch masked
exactly on the human turns."""

from __future__ import annotations

import json

import pytest
import torch
from tests.helpers.llava_files import ASK, _turns, released

from msl_ablate.commands.data import main as data_main
from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.data.records import check_records, load_records, normalize
from msl_ablate.models.assemble import build_vlm
from msl_ablate.utils.errors import DataError


def test_the_image_placeholder_is_placed_as_llava_places_it():
    at_end = normalize({"id": 1, "image": "a.jpg", "conversations": _turns(f"{ASK} <image>", "x")})
    missing = normalize({"id": 2, "image": "a.jpg", "conversations": _turns(ASK, "x")})
    first = normalize({"id": 3, "image": "a.jpg", "conversations": _turns(f"<image>\n{ASK}", "x")})
    for rec in (at_end, missing, first):
        assert rec["conversations"][0]["value"] == f"<image>\n{ASK}"
    text = {"id": 4, "conversations": _turns("hi", "yo")}
    assert normalize(text) == text
    for bad, why in (({"id": 5, "conversations": _turns("<image> hi", "yo")}, "no image but 1"),
                     ({"id": 6, "image": "a", "conversations": _turns("<image><image>", "y")},
                      "2 '<image>'"),
                     ({"id": 7, "conversations": _turns("hi")}, "no gpt turn"),
                     ({"conversations": _turns("hi", "yo")}, "needs an 'id'"),
                     ({"id": True, "conversations": _turns("hi", "yo")}, "needs an 'id'")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            normalize(bad)


def test_every_problem_is_named_with_its_record(tmp_path):
    path = released(tmp_path)
    raw = json.loads(path.read_text())
    records, problems = check_records(raw, tmp_path, open_images=True)
    found = {(p.kind, p.record) for p in problems}
    assert found == {("missing_image", "missing"), ("wrong_extension", "140031996"),
                     ("malformed", "bad-turn"), ("duplicate_id", "000001"),
                     ("unreadable_image", "broken"), ("format_mismatch", "png")}  # fmt: skip
    wrong = next(p for p in problems if p.kind == "wrong_extension")
    assert "140031996.gif" in wrong.detail
    # Warnings keep their record; errors do not.
    assert [r["id"] for r in records] == ["000001", 2354786, "no-placeholder", "text-only",
                                          "000001", "png"]  # fmt: skip
    # Training opens no image: the unreadable one is only found when read (or by data check).
    with pytest.raises(DataError) as err:
        load_records(path, tmp_path)
    assert "3 records cannot be trained on" in str(err.value) and "data check" in str(err.value)
    assert "record missing: image file not found" in str(err.value)
    kept = load_records(path, tmp_path, on_error="skip")
    assert [r["id"] for r in kept][-2:] == ["broken", "png"]


@pytest.fixture
def tiny(make_cfg):
    cfg = make_cfg()
    return cfg, build_vlm(cfg)


def test_a_mixed_batch_is_masked_exactly_on_the_human_turns_and_trains(tmp_path, tiny):
    cfg, vlm = tiny
    records = load_records(released(tmp_path), tmp_path, on_error="skip")[:4]
    dataset = LlavaDataset(records, tmp_path, vlm.lm.tokenizer, vlm.vision.image_transform,
                           vlm.num_image_tokens, 512)  # fmt: skip
    tokenizer = vlm.lm.tokenizer
    for i, rec in enumerate(records):
        item = dataset[i]
        labelled = item["labels"][item["labels"] != -100]
        text = tokenizer.decode(labelled)
        answers = [t["value"] for t in rec["conversations"] if t["from"] == "gpt"]
        questions = [t["value"].replace("<image>\n", "") for t in rec["conversations"]
                     if t["from"] == "human"]  # fmt: skip
        # Every answer, in order, and nothing of a question, is a target.
        position = 0
        for answer in answers:
            position = text.index(answer, position) + len(answer)
        assert not any(q in text for q in questions), (rec["id"], text)
        assert ("pixel_values" in item) == (rec.get("image") is not None)
    batch = VLMCollator(tokenizer.pad_token_id)([dataset[i] for i in range(len(records))])
    assert batch["pixel_values"].shape[0] == 3  # three image records, one text-only
    batch.pop("ids")
    loss = vlm(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and vlm.projector.parameters().__next__().grad is not None


def test_too_long_records_are_cut_in_their_text_never_in_their_image(tmp_path, tiny):
    _, vlm = tiny
    records = load_records(released(tmp_path), tmp_path, on_error="skip")[:1]  # multi-turn

    def dataset(max_length: int, too_long: str) -> LlavaDataset:
        return LlavaDataset(records, tmp_path, vlm.lm.tokenizer, vlm.vision.image_transform,
                            vlm.num_image_tokens, max_length, too_long=too_long)  # fmt: skip

    full = len(dataset(512, "error")[0]["input_ids"])
    cut = dataset(full - 3, "truncate")[0]
    assert len(cut["input_ids"]) == full - 3 and cut["truncated"]
    assert (cut["input_ids"] == vlm.image_token_id).sum() == vlm.num_image_tokens
    assert VLMCollator(0)([cut, dataset(512, "error")[0]])["truncated"] == 1
    with pytest.raises(DataError, match="record 000001: .* exceed data.max_length.*too_long"):
        dataset(full - 3, "error")[0]
    with pytest.raises(DataError, match="would cut its image tokens"):
        dataset(vlm.num_image_tokens, "truncate")[0]


def test_data_check_reports_each_problem_with_its_id_and_fails(tmp_path, make_cfg, capsys):
    released(tmp_path / "playground")
    overrides = [f"paths.root={tmp_path}", "data=llava_mix665k",
                 f"data.root={tmp_path / 'playground'}", "vision=tiny_siglip", "lm=tiny_phi",
                 "data.max_length=null"]  # fmt: skip
    code = data_main(["check", *overrides])
    out = capsys.readouterr().out
    assert code == 1
    assert "records 10: 6 usable (5 with an image, 1 text-only), 4 with errors" in out
    for kind, rid in (("missing_image", "missing"), ("wrong_extension", "140031996"),
                      ("malformed", "bad-turn"), ("unreadable_image", "broken"),
                      ("duplicate_id", "000001"), ("format_mismatch", "png")):  # fmt: skip
        assert f"{kind} (" in out and f"record {rid}:" in out, kind
    assert "turns per record: 2: 5, 4: 1 (1 multi-turn)" in out
    assert "tokens per record (image tokens included): p50" in out
    assert "training refuses these files unless data.on_error=skip" in out
