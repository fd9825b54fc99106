"""The training order is a function of (seed, stream position): restarts and ranks agree on it."""

from __future__ import annotations

import pytest

from msl_ablate.data.sampler import PositionSampler, epoch_permutation, record_at


def _stream(seed: int, n: int, start: int, count: int) -> list[int]:
    return [record_at(seed, p, n) for p in range(start, start + count)]


def test_each_pass_is_a_permutation_fixed_by_seed_and_pass():
    n = 10
    for epoch in range(3):
        order = epoch_permutation(7, epoch, n).tolist()
        assert sorted(order) == list(range(n))
        assert order == epoch_permutation(7, epoch, n).tolist()  # no hidden state
    assert epoch_permutation(7, 0, n).tolist() != epoch_permutation(7, 1, n).tolist()
    assert epoch_permutation(7, 0, n).tolist() != epoch_permutation(8, 0, n).tolist()
    assert _stream(7, n, 0, 3 * n) == sum(
        (epoch_permutation(7, e, n).tolist() for e in range(3)), []
    )


def test_one_rank_yields_the_stream_from_its_start_position():
    n, batch = 10, 3  # 3 full steps per Lightning epoch, the tenth record waits for the next
    sampler = PositionSampler(n, batch, seed=1)
    assert len(sampler) == 9
    assert list(sampler) == _stream(1, n, 0, 9)
    start = {"position": 0}
    resumed = PositionSampler(n, batch, seed=1, start_position=lambda: start["position"])
    for position in (0, 9, 12, 27):  # a restart at any step continues the same stream
        start["position"] = position
        assert list(resumed) == _stream(1, n, position, 9)


def test_ranks_split_each_step_into_disjoint_slices():
    n, batch, world = 10, 2, 3
    ranks = [PositionSampler(n, batch, 5, lambda: 12, rank=r, world_size=world) for r in range(3)]
    assert all(len(s) == 1 * batch for s in ranks)  # 10 // 6 = 1 step per epoch
    yielded = [list(s) for s in ranks]
    # Step 2 (positions 12..17): rank r takes positions 12 + 2r and 13 + 2r.
    for r, samples in enumerate(yielded):
        assert samples == _stream(5, n, 12 + batch * r, batch)
    positions = [p for s in ranks for p in s.positions(12)]
    assert sorted(positions) == list(range(12, 18))  # disjoint and complete


def test_a_split_smaller_than_the_batch_is_one_pass_per_step():
    sampler = PositionSampler(3, 3, seed=0, start_position=lambda: 6)
    assert sorted(sampler) == [0, 1, 2]


def test_bad_arguments_and_start_positions_raise():
    with pytest.raises(ValueError, match="num_records, batch_size and world_size >= 1, got 0"):
        PositionSampler(0, 4, seed=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        PositionSampler(8, 4, seed=0, rank=2, world_size=2)
    with pytest.raises(RuntimeError, match="start position 6 is not a non-negative multiple of"):
        list(PositionSampler(8, 4, seed=0, start_position=lambda: 6))
