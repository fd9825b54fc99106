"""The dataset of LLaVA-format records (``data.records``): tokens, labels and the image of each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from msl_ablate.data.conversation import to_messages, tokenize_conversation
from msl_ablate.data.feature_cache import FeatureCache, image_digest
from msl_ablate.data.token_cache import Tokens, TokenTable
from msl_ablate.data.tokens import IGNORE_INDEX, IMAGE_TOKEN
from msl_ablate.utils.errors import DataError


class LlavaDataset(Dataset):
    """Tokenized samples with their image tensor, for training or generation.

    Args:
        records: LLaVA records, normalised (``data.records.load_records``).
        image_dir: Folder of the images.
        tokenizer: The LM's tokenizer.
        image_transform: PIL -> ``(3, H, W)`` tensor (the encoder's).
        num_image_tokens: Tokens per image.
        max_length: Longest sequence; longer samples raise rather than silently lose image tokens.
        for_generation: Build prompts without the final answer (evaluation).
        features: Read each image's vision features from this cache (``image_features``)
            instead of decoding it (``pixel_values``); it must hold every image of the records.
        keep_tokens: Tokenize each record once and keep it (False: on every read, as LLaVA's
            lazy dataset does; ``msl-ablate bench``'s reference loop).
        tokens: Every record's tokens, read from the token cache (``data.token_cache``);
            None: each record is tokenized when first read.
        too_long: A record longer than ``max_length``: ``error`` names it; ``truncate`` cuts
            its text at ``max_length`` (never its image tokens: a record whose image would be
            cut is an error) and marks the item ``truncated``.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        image_dir: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        image_transform: Callable[[Image.Image], torch.Tensor],
        num_image_tokens: int,
        max_length: int,
        for_generation: bool = False,
        features: FeatureCache | None = None,
        keep_tokens: bool = True,
        tokens: TokenTable | None = None,
        too_long: str = "error",
    ):
        if too_long not in ("error", "truncate"):
            raise ValueError(f"data.too_long must be 'error' or 'truncate', got {too_long!r}")
        self.records = records
        self.image_dir = Path(image_dir)
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.for_generation = for_generation
        self.features = features
        # Each record tokenized once per process (the chat template is about half an item's
        # cost, and a stage reads its records once per epoch): ids as int32 and the trained
        # positions as a mask, 5 bytes a token (~1 GB for LLaVA's 665k records).
        self._tokens: dict[int, Tokens] = {}
        self.keep_tokens = keep_tokens
        self.table = tokens
        self.too_long = too_long
        self._digests: dict[str, str] = {}  # the feature cache's key of each record's image

    def __len__(self) -> int:
        return len(self.records)

    def lengths(self) -> list[int]:
        """Each record's approximate length in tokens, for length-grouped batches: its image
        tokens plus a quarter of its text's characters (about 4 per BPE token). Only their order
        matters; tokenizing every record first would take minutes on LLaVA's 665k records."""
        return [
            self.num_image_tokens * int(rec.get("image") is not None)
            + sum(len(turn.get("value", "")) for turn in rec["conversations"]) // 4
            for rec in self.records
        ]

    def modality_lengths(self) -> list[int]:
        """``lengths`` negated for text-only records (LLaVA's modality lengths)."""
        return [n if rec.get("image") is not None else -n
                for n, rec in zip(self.lengths(), self.records, strict=True)]  # fmt: skip

    def token_lengths(self) -> list[int]:
        """Each record's exact length in tokens (without a token table, tokenizes every record:
        seconds per 10k)."""
        if self.table is not None:
            return self.table.lengths().tolist()
        return [len(self._tokens_of(i)[0]) for i in range(len(self.records))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        ids, trained, num_images = self._tokens_of(index)
        truncated = len(ids) > self.max_length
        if truncated:
            ids, trained = ids[: self.max_length], trained[: self.max_length]
        input_ids = torch.from_numpy(ids.astype(np.int64))
        labels = torch.where(torch.from_numpy(trained), input_ids, IGNORE_INDEX)
        has_image = rec.get("image") is not None
        if num_images != int(has_image):
            raise DataError(
                f"record {rec['id']}: {num_images} '<image>' placeholders but "
                f"{'an image' if has_image else 'no image'}; expected exactly one placeholder per image"
            )
        item: dict[str, Any] = {
            "id": rec["id"],
            "input_ids": input_ids,
            "labels": labels,
        }
        if truncated:
            item["truncated"] = True
        if has_image and self.features is not None:
            digest = self._digests.get(rec["image"])
            if digest is None:
                digest = self._digests[rec["image"]] = image_digest(self.image_dir / rec["image"])
            item["image_features"] = self.features.get(digest)  # (N, D_v)
        elif has_image:
            path = self.image_dir / rec["image"]
            try:
                with Image.open(path) as image:
                    item["pixel_values"] = self.image_transform(image)  # (3, H, W)
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(
                    f"record {rec['id']}: image {path} cannot be read ({err}); "
                    "`msl-ablate data check` opens every image of a split before training"
                ) from err
        return item

    def _tokens_of(self, index: int) -> Tokens:
        """A record's tokens, its length checked: from the token table, or tokenized (and
        kept after the first read when ``keep_tokens``)."""
        if self.table is not None:
            tokens = self.table.get(index)
        else:
            tokens = self._tokens.get(index) or self.tokenize(self.records[index])
            if self.keep_tokens:
                self._tokens[index] = tokens
        ids, _, num_images = tokens
        if len(ids) <= self.max_length:
            return tokens
        where = (
            f"record {self.records[index]['id']}: {len(ids)} tokens (with {num_images} x "
            f"{self.num_image_tokens} image tokens) exceed data.max_length={self.max_length}"
        )
        if self.too_long == "error":
            raise DataError(f"{where} (data.too_long=truncate cuts such records' text)")
        image_at = np.flatnonzero(ids == self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        if len(image_at) and image_at[-1] >= self.max_length:
            raise DataError(f"{where}, and truncating would cut its image tokens")
        return tokens

    def tokenize(self, rec: dict[str, Any]) -> Tokens:
        """``(ids, trained mask, number of images)`` of a record."""
        messages = to_messages(rec["conversations"], rec["id"])
        sample = tokenize_conversation(
            self.tokenizer, messages, self.num_image_tokens, self.for_generation
        )
        ids = np.asarray(sample.input_ids, dtype=np.int32)
        trained = np.asarray(sample.labels) != IGNORE_INDEX
        return ids, trained, sample.num_images

    def image_paths(self) -> list[Path]:
        """The image files of the records, each once, in record order."""
        paths = [self.image_dir / rec["image"] for rec in self.records if rec.get("image")]
        return list(dict.fromkeys(paths))
