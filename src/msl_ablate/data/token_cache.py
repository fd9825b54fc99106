"""Every record of a data file tokenized once, on disk, shared by every run that reads it with
the same tokenizer.

Rendering a conversation with the chat template and finding its answer spans is about half of
an item's loading cost (0.2-0.4 ms a record on one core here), and a sweep reads the same
records with the same tokenizer in every cell, seed and epoch. The table holds all records'
token ids, trained-position masks and image counts in three flat arrays:

    <cache_dir>/tokens/<key>.npz   ids int32, trained bool, offsets int64 (n + 1), images int16

The key hashes the data file's content, the tokenizer (its whole serialized form and chat
template), the image tokens per image and whether prompts end for generation, plus
``TOKENS_VERSION`` (bump it when ``data.conversation`` changes what it produces). Lengths are
not checked here: a record's length is checked against ``max_length`` when it is read, so one
table serves every ``max_length``. Written atomically under a lock: a second process waits for
the first instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from msl_ablate.utils.files import atomic_path, file_digest, stable_hash
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

TOKENS_DIR = "tokens"
TOKENS_VERSION = 1

Tokens = tuple[np.ndarray, np.ndarray, int]  # (ids int32, trained bool, number of images)


@dataclass(frozen=True)
class TokenTable:
    """All records' tokens: record ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    trained: np.ndarray
    offsets: np.ndarray
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def get(self, index: int) -> Tokens:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end], self.trained[start:end], int(self.images[index])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def build(cls, tokens: Iterable[Tokens]) -> TokenTable:
        ids, trained, images = [], [], []
        for record_ids, record_trained, num_images in tokens:
            ids.append(record_ids)
            trained.append(record_trained)
            images.append(num_images)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in ids], out=offsets[1:])
        return cls(
            np.concatenate(ids or [np.zeros(0, np.int32)]).astype(np.int32),
            np.concatenate(trained or [np.zeros(0, bool)]).astype(bool),
            offsets,
            np.asarray(images, dtype=np.int16),
        )

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, ids=self.ids, trained=self.trained, offsets=self.offsets,
                     images=self.images)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        with np.load(path) as data:
            return cls(data["ids"], data["trained"], data["offsets"], data["images"])


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the token ids depend on: the tokenizer's full serialized form and chat template."""
    sha = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    sha.update((backend.to_str() if backend is not None else repr(tokenizer.get_vocab())).encode())
    sha.update(str(tokenizer.chat_template).encode())
    sha.update(repr(sorted(map(str, tokenizer.all_special_tokens))).encode())
    return sha.hexdigest()[:16]


def table_key(data_file: Path, tokenizer: PreTrainedTokenizerBase, num_image_tokens: int,
              for_generation: bool) -> str:  # fmt: skip
    return stable_hash(
        {"data": file_digest(data_file), "tokenizer": tokenizer_fingerprint(tokenizer),
         "image_tokens": num_image_tokens, "generation": for_generation,
         "version": TOKENS_VERSION}, 16,
    )  # fmt: skip


def cached_table(
    cache_dir: Path,
    data_file: Path,
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    num_image_tokens: int,
    for_generation: bool,
    tokenize: Callable[[dict[str, Any]], Tokens],
) -> TokenTable:
    """The records' token table from the cache, tokenizing them (once, under a lock) on a miss.

    Args:
        cache_dir: ``paths.cache_dir``.
        data_file: The JSON file the records were read from (its content is the key).
        records: Its records, in file order.
        tokenizer: The LM's tokenizer.
        num_image_tokens: Tokens per image.
        for_generation: Prompts end with the generation prompt (no answer).
        tokenize: One record's tokens (``LlavaDataset.tokenize``).
    """
    key = table_key(data_file, tokenizer, num_image_tokens, for_generation)
    path = Path(cache_dir) / TOKENS_DIR / f"{key}.npz"
    with hold(path.with_suffix(".lock"), f"the token table of {data_file.name}"):
        if path.is_file():
            table = TokenTable.load(path)
            if len(table) == len(records):
                return table
            log.warning("%s holds %d records, %s has %d: tokenizing again",
                        path, len(table), data_file, len(records))  # fmt: skip
        progress = tqdm(records, desc=f"tokenizing {data_file.name}", unit="rec",
                        mininterval=2.0, disable=len(records) < 5000)  # fmt: skip
        table = TokenTable.build(tokenize(record) for record in progress)
        table.save(path)
        log.info("Tokenized %d records of %s into %s", len(records), data_file, path)
    return table
