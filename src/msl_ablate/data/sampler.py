"""Training order as a function of position in one endless stream, so a resumed stage continues it.

Position ``p`` of the stream is record ``perm_e[p % n]`` with ``e = p // n`` and ``perm_e`` a
permutation seeded by ``(seed, e)``: the order depends on nothing but the seed and the
position, never on how many times the loader was restarted. A stage resumed at global step
``s`` starts at position ``s * batch_size * world_size`` (``start_position``) and sees exactly
the samples an uninterrupted run would have seen. Each global step uses ``batch_size *
world_size`` consecutive positions; rank ``r`` takes the ``r``-th slice of ``batch_size``.

With record lengths (``strategy.stages.<stage>.group_by_length``), each pass's permutation puts
records of similar length in the same step (less padding), still a function of (seed, pass).

``PositionLoader`` is the ``DataLoader`` for it: it tells Lightning that a mid-epoch resume is
exact (Lightning warns otherwise) and checks that the checkpoint's stream is this one.

Lightning would wrap this sampler in a ``DistributedSampler`` on several devices, which
splits its output by rank again; the trainer must be built with ``use_distributed_sampler=False``
(``TRAINER_KWARGS``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

# What the Trainer of a stage trained with ``PositionSampler`` needs (the sampler splits by rank).
TRAINER_KWARGS = {"use_distributed_sampler": False}


def _generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per (seed, epoch), so a pass's order never depends on the passes before it;
    # hashed so that no two (seed, epoch) pairs share a generator seed.
    key = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(key, "little"))


def epoch_permutation(
    seed: int,
    epoch: int,
    num_records: int,
    lengths: Sequence[int] | None = None,
    step_size: int = 1,
) -> torch.Tensor:
    """The order of the records in pass ``epoch`` over the data.

    Args:
        seed: The run's seed.
        epoch: Which pass over the data (``position // num_records``).
        num_records: Records in the split.
        lengths: Each record's length: then every run of ``step_size`` positions holds records
            of similar length (transformers' length grouping: sorted within random groups of
            up to 50 steps), the steps in random order, the one with the longest record first.
            Negative lengths mark text-only records (LLaVA's modality lengths): image and
            text-only records are then grouped apart and share only one step per pass, the
            one made of both groups' remainders.
        step_size: Positions per global step (with ``lengths``).

    Returns:
        A permutation of ``range(num_records)`` (int64).
    """
    generator = _generator(seed, epoch)
    if lengths is None:
        return torch.randperm(num_records, generator=generator)
    if len(lengths) != num_records:
        raise ValueError(f"{len(lengths)} lengths for {num_records} records")
    order = torch.tensor(_grouped(list(lengths), step_size, generator))
    # The library sorts each group of steps longest first, a sawtooth of sequence length over
    # a stage's steps; a random order of the full steps after the first (the one holding the
    # longest record, so that memory runs out at step 1 if at all) removes it.
    n_steps = num_records // step_size
    if n_steps > 2:
        steps = order[: n_steps * step_size].view(n_steps, step_size)
        shuffled = torch.cat([torch.zeros(1, dtype=torch.long),
                              1 + torch.randperm(n_steps - 1, generator=generator)])  # fmt: skip
        order = torch.cat([steps[shuffled].reshape(-1), order[n_steps * step_size :]])
    return order


def _grouped(lengths: list[int], step_size: int, generator: torch.Generator) -> list[int]:
    """Length-grouped order; with signed lengths, image (> 0) and text-only (< 0) records in
    steps of their own, the two remainders together at the end (LLaVA's modality grouping)."""
    if all(n > 0 for n in lengths) or all(n < 0 for n in lengths):
        return get_length_grouped_indices([abs(n) for n in lengths], step_size, generator=generator)
    order, rest = [], []
    for group in ([i for i, n in enumerate(lengths) if n > 0],
                  [i for i, n in enumerate(lengths) if n < 0]):  # fmt: skip
        grouped = get_length_grouped_indices([abs(lengths[i]) for i in group], step_size,
                                             generator=generator)  # fmt: skip
        full = len(group) // step_size * step_size
        order += [group[j] for j in grouped[:full]]
        rest += [group[j] for j in grouped[full:]]
    return order + rest


def record_at(
    seed: int,
    position: int,
    num_records: int,
    lengths: Sequence[int] | None = None,
    step_size: int = 1,
) -> int:
    """The record at ``position`` of the stream (one permutation per pass over the data)."""
    epoch, offset = divmod(position, num_records)
    return int(epoch_permutation(seed, epoch, num_records, lengths, step_size)[offset])


class PositionSampler(Sampler[int]):
    """Yields this rank's records of one Lightning epoch, starting where training stands.

    Every batch is full: a step may span the end of one pass and the start of the next. The
    stream does not restart at Lightning's epoch boundaries; they only decide when
    ``__iter__`` is called again, and it then asks ``start_position`` where to continue.

    Args:
        num_records: Records in the split (> 0).
        batch_size: Samples per step on each rank (> 0).
        seed: Seeds every pass's permutation.
        start_position: Called at each ``__iter__``: the first stream position of the next
            global step, a multiple of ``batch_size * world_size``.
        rank: This process's global rank.
        world_size: Number of processes; each step uses ``batch_size * world_size`` positions.
        lengths: Each record's length, for length-grouped steps (``epoch_permutation``).
        accumulation: Batches per optimizer step (gradient accumulation): a Lightning epoch
            holds a multiple of it, since Lightning also steps on an epoch's last batch.

    Raises:
        ValueError: A count is not positive, or ``rank`` is outside ``[0, world_size)``.
    """

    def __init__(
        self,
        num_records: int,
        batch_size: int,
        seed: int,
        start_position: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        lengths: Sequence[int] | None = None,
        accumulation: int = 1,
    ):
        if num_records < 1 or batch_size < 1 or world_size < 1 or accumulation < 1:
            raise ValueError(
                f"PositionSampler needs num_records, batch_size, world_size and accumulation "
                f">= 1, got {num_records}, {batch_size}, {world_size} and {accumulation} (is the "
                f"training split empty?)"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_records = num_records
        self.batch_size = batch_size
        self.seed = seed
        self.start_position = start_position
        self.rank = rank
        self.world_size = world_size
        self.lengths = lengths
        self.accumulation = accumulation

    @property
    def step_size(self) -> int:
        """Stream positions used by one global step (all ranks together)."""
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        """Batches in one Lightning epoch: a pass's worth of whole optimizer steps, at least one."""
        per_optimizer_step = self.step_size * self.accumulation
        return max(1, self.num_records // per_optimizer_step) * self.accumulation

    def __len__(self) -> int:
        return self.steps_per_epoch * self.batch_size

    def positions(self, start: int) -> Iterator[int]:
        """This rank's stream positions for one Lightning epoch starting at ``start``."""
        for step in range(self.steps_per_epoch):
            first = start + step * self.step_size + self.rank * self.batch_size
            yield from range(first, first + self.batch_size)

    def __iter__(self) -> Iterator[int]:
        start = self.start_position()
        if start < 0 or start % self.step_size:
            raise RuntimeError(
                f"PositionSampler: start position {start} is not a non-negative multiple of "
                f"batch_size * world_size = {self.step_size}; the loader and the trainer disagree "
                f"on the batch size or the number of processes"
            )
        epoch, order = None, torch.empty(0, dtype=torch.long)
        for position in self.positions(start):
            if position // self.num_records != epoch:  # (re)compute only at pass boundaries
                epoch = position // self.num_records
                order = epoch_permutation(self.seed, epoch, self.num_records, self.lengths,
                                          self.step_size)  # fmt: skip
            yield int(order[position % self.num_records])


class PositionLoader(DataLoader):
    """A ``DataLoader`` over a ``PositionSampler``, resumable in Lightning's sense.

    Its state is the stream's definition, not a position (that comes from the restored
    ``global_step``); ``load_state_dict`` refuses a checkpoint written with another stream.
    """

    def state_dict(self) -> dict[str, int]:
        """What the stream order depends on besides the position."""
        sampler = self.sampler
        if not isinstance(sampler, PositionSampler):
            raise TypeError(f"PositionLoader needs a PositionSampler, got {type(sampler).__name__}")
        return {"seed": sampler.seed, "num_records": sampler.num_records,
                "step_size": sampler.step_size,
                # 0: random, 1: by length, 2: by length and modality (negative lengths)
                "grouped_by_length": 0 if sampler.lengths is None
                else 1 + any(n < 0 for n in sampler.lengths),
                "accumulation": sampler.accumulation}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Check that the checkpoint's stream is this loader's.

        Raises:
            RuntimeError: The seed, the split's size or ``batch_size * world_size`` changed, so
                the resumed stage would not see the data the interrupted one would have.
        """
        ours = self.state_dict()
        changed = {k: (v, ours[k]) for k, v in state_dict.items() if ours.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise RuntimeError(
                f"cannot resume this stage exactly: its data stream changed since the checkpoint "
                f"({detail}); restore the data split, seed, batch size, length grouping, device count and global batch, or "
                f"delete the stage's checkpoints folder to train it from the start"
            )
