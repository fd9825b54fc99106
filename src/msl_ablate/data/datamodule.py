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
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.data.feature_cache import FeatureCache
from msl_ablate.data.records import (
    RecordProblem,
    load_checked_records,
    skipped_errors,
    summarize,
)
from msl_ablate.data.sampler import TRAINER_KWARGS, PositionLoader, PositionSampler
from msl_ablate.data.token_cache import cached_table
from msl_ablate.utils.files import stable_hash
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)


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


def split_image_dir(data_cfg: DictConfig, root: Path, split: str) -> Path:
    """The folder a split's ``image`` paths are relative to (``data.image_dirs[split]``, else
    ``data.image_dir``)."""
    return root / (data_cfg.get("image_dirs") or {}).get(split, data_cfg.image_dir)


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
        batch_size: Samples per step on each device.
        seed: Seeds the data order (``data.sampler``).
        group_by_length: Steps of records of similar length (``data.sampler.epoch_permutation``).
        group_by_modality: With ``group_by_length``, image and text-only records in steps of
            their own (LLaVA's ``group_by_modality_length``).
        features: Serve cached vision features instead of images (``data.feature_cache``).
        token_cache: ``paths.cache_dir`` to read the records' tokens from (filled on a miss:
            ``data.token_cache``); None: each record is tokenized when first read.
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
        group_by_length: bool = False,
        group_by_modality: bool = False,
        features: FeatureCache | None = None,
        token_cache: Path | None = None,
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
        self.group_by_length = group_by_length
        self.group_by_modality = group_by_modality
        self.features = features
        self.token_cache = token_cache
        self.train_set: LlavaDataset | None = None
        # Records left out by data.on_error=skip, with what is wrong with each.
        self.skipped: list[RecordProblem] = []

    def make_dataset(self, split: str) -> LlavaDataset:
        path = split_path(self.data_cfg, self.root, split)
        image_dir = split_image_dir(self.data_cfg, self.root, split)
        records, problems = load_checked_records(path, image_dir)
        self.skipped = skipped_errors(path, problems, self.data_cfg.get("on_error", "error"))
        if self.skipped:
            log.warning("%s: %d records with errors left out (data.on_error=skip): %s",
                        path, len(self.skipped), summarize(self.skipped))  # fmt: skip
        dataset = LlavaDataset(
            records,
            image_dir,
            self.tokenizer,
            self.image_transform,
            self.num_image_tokens,
            self.max_length,
            features=self.features,
            too_long=self.data_cfg.get("too_long", "error"),
        )
        if self.token_cache is not None:
            dataset.table = cached_table(
                self.token_cache, path, records, self.tokenizer, self.num_image_tokens,
                for_generation=False, tokenize=dataset.tokenize,
            )  # fmt: skip
        return dataset

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.make_dataset(self.split)

    def _lengths(self) -> list[int] | None:
        if not self.group_by_length:
            return None
        if self.group_by_modality:
            return self.train_set.modality_lengths()
        return self.train_set.lengths()

    def _start_position(self, batch_size: int, world_size: int) -> int:
        """First stream position of the next step: Lightning has restored ``global_step`` from
        the checkpoint before it asks for or iterates the loader; 0 without a trainer."""
        trainer = self.trainer
        if trainer is None:
            return 0
        steps = trainer.global_step * trainer.accumulate_grad_batches  # batches drawn so far
        return steps * batch_size * world_size

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Full batches in the order of ``data.sampler.PositionSampler``, from the current step.

        A split smaller than ``batch_size`` gives batches of all its records (one pass each).

        Raises:
            RuntimeError: On several devices with Lightning's distributed sampler still on.
        """
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        # Lightning exposes this only on its connector; a wrapped sampler would split twice.
        if world_size > 1 and getattr(trainer._accelerator_connector, "use_distributed_sampler", 0):
            raise RuntimeError(
                f"the training sampler splits the data by rank itself; build the Trainer with "
                f"{TRAINER_KWARGS} (it runs on {world_size} processes)"
            )
        batch_size = min(self.batch_size, len(self.train_set))
        sampler = PositionSampler(
            len(self.train_set), batch_size, self.seed,
            start_position=lambda: self._start_position(batch_size, world_size),
            rank=rank, world_size=world_size,
            lengths=self._lengths(),
            accumulation=trainer.accumulate_grad_batches if trainer else 1,
        )  # fmt: skip
        return PositionLoader(
            self.train_set,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.data_cfg.num_workers,
            persistent_workers=self.data_cfg.num_workers > 0,
            # Page-locked batches copy to the GPU without a staging copy.
            pin_memory=trainer is not None and trainer.strategy.root_device.type == "cuda",
            collate_fn=VLMCollator(self.tokenizer.pad_token_id, "right"),
            # Its own generator: seeding workers must not draw from the global RNG, which a
            # checkpoint restores and the next step's dropout must find unchanged.
            generator=torch.Generator().manual_seed(self.seed),
        )
