"""The LightningDataModule: which split a stage trains on, how batches are made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.dataset import LlavaDataset, load_records
from msl_ablate.utils.files import stable_hash


def resolve_data_root(data_cfg: DictConfig, data_dir: str | Path) -> Path:
    """The dataset folder, generating the synthetic data first when the config has a generator.

    Args:
        data_cfg: The ``data`` group.
        data_dir: ``paths.data_dir``, where generated datasets are cached.

    Returns:
        The folder that ``data.files`` are relative to.
    """
    if data_cfg.generator is None:
        return Path(data_cfg.root).expanduser()
    root = (
        Path(data_dir).expanduser() / f"{data_cfg.name}-{stable_hash(dict(data_cfg.generator), 8)}"
    )
    instantiate(data_cfg.generator, root=root)
    return root


def split_path(data_cfg: DictConfig, root: Path, split: str) -> Path:
    """Path of a split's JSON file (``data.files[split]``)."""
    if split not in data_cfg.files:
        raise KeyError(f"data.files has no split {split!r}; available: {sorted(data_cfg.files)}")
    return root / data_cfg.files[split]


class VLMDataModule(L.LightningDataModule):
    """Serves one split of a LLaVA-format dataset for one training stage.

    Args:
        data_cfg: The ``data`` group.
        root: Dataset folder (see ``resolve_data_root``).
        split: The split this stage trains on (a key of ``data.files``).
        tokenizer: The LM tokenizer.
        image_transform: The encoder's image transform.
        num_image_tokens: Image tokens per image.
        max_length: Longest sequence (``models.assemble.max_sequence_length``).
        batch_size: Samples per step.
        seed: Shuffling seed.
    """

    def __init__(
        self,
        data_cfg: DictConfig,
        root: Path,
        split: str,
        tokenizer: PreTrainedTokenizerBase,
        image_transform: Callable,
        num_image_tokens: int,
        max_length: int,
        batch_size: int,
        seed: int = 0,
    ):
        super().__init__()
        self.data_cfg = data_cfg
        self.root = root
        self.split = split
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.train_set: LlavaDataset | None = None

    def make_dataset(self, split: str) -> LlavaDataset:
        records = load_records(
            split_path(self.data_cfg, self.root, split), self.root / self.data_cfg.image_dir
        )
        return LlavaDataset(
            records,
            self.root / self.data_cfg.image_dir,
            self.tokenizer,
            self.image_transform,
            self.num_image_tokens,
            self.max_length,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.make_dataset(self.split)

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= self.batch_size,
            num_workers=self.data_cfg.num_workers,
            persistent_workers=self.data_cfg.num_workers > 0,
            collate_fn=VLMCollator(self.tokenizer.pad_token_id, "right"),
            generator=torch.Generator().manual_seed(self.seed),
        )
