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


def test_an_epoch_holds_whole_optimizer_steps_under_gradient_accumulation():
    # Lightning also steps on an epoch's last batch: an epoch of 5 batches with 2 per step
    # would take a half step and lose the stream's alignment with global_step.
    assert PositionSampler(10, 2, seed=0).steps_per_epoch == 5
    assert PositionSampler(10, 2, seed=0, accumulation=2).steps_per_epoch == 4
    assert PositionSampler(10, 2, seed=0, accumulation=3).steps_per_epoch == 3
    assert PositionSampler(5, 2, seed=0, accumulation=3).steps_per_epoch == 3  # at least one step
    sampler = PositionSampler(10, 2, seed=0, start_position=lambda: 8, accumulation=2)
    assert list(sampler) == _stream(0, 10, 8, 8)  # the stream is unchanged: 4 batches from 8


def test_a_split_smaller_than_the_batch_is_one_pass_per_step():
    sampler = PositionSampler(3, 3, seed=0, start_position=lambda: 6)
    assert sorted(sampler) == [0, 1, 2]


def test_bad_arguments_and_start_positions_raise():
    with pytest.raises(ValueError, match="accumulation >= 1, got 0, 4, 1 and 1"):
        PositionSampler(0, 4, seed=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        PositionSampler(8, 4, seed=0, rank=2, world_size=2)
    with pytest.raises(RuntimeError, match="start position 6 is not a non-negative multiple of"):
        list(PositionSampler(8, 4, seed=0, start_position=lambda: 6))


def _padding(order: list[int], lengths: list[int], step: int) -> float:
    steps = [order[i : i + step] for i in range(0, len(order) - step + 1, step)]
    computed = sum(max(lengths[r] for r in s) * len(s) for s in steps)
    return 1 - sum(lengths[r] for s in steps for r in s) / computed


def test_length_grouped_passes_pad_less_and_stay_a_function_of_seed_and_pass():
    import random

    draw = random.Random(0)
    n, step = 4000, 32  # LLaVA-like: many short answers, some long turns
    lengths = [draw.choice([20, 30, 40]) + (draw.random() < 0.2) * draw.randint(50, 200)
               for _ in range(n)]  # fmt: skip
    plain = epoch_permutation(3, 0, n).tolist()
    grouped = epoch_permutation(3, 0, n, lengths, step).tolist()
    assert sorted(grouped) == list(range(n))
    assert grouped == epoch_permutation(3, 0, n, lengths, step).tolist()  # no hidden state
    assert grouped != epoch_permutation(3, 1, n, lengths, step).tolist()
    assert _padding(plain, lengths, step) > 0.4 and _padding(grouped, lengths, step) < 0.1
    # The longest record is in the first step: memory runs out at once if at all.
    assert max(lengths[r] for r in grouped[:step]) == max(lengths)
    # Steps come in random order, not longest first within each group of steps.
    longest = [max(lengths[r] for r in grouped[i : i + step]) for i in range(step, n - step, step)]
    assert sum(a < b for a, b in zip(longest, longest[1:], strict=False)) > len(longest) // 5
    # A restart anywhere continues the same grouped stream.
    sampler = PositionSampler(n, step, seed=3, start_position=lambda: 64 * step, lengths=lengths)
    stream = [record_at(3, p, n, lengths, step) for p in range(64 * step, 65 * step)]
    assert list(sampler)[:step] == stream


def test_a_changed_grouping_refuses_to_resume():
    from msl_ablate.data.sampler import PositionLoader

    lengths = list(range(8))
    grouped = PositionLoader(list(range(8)), batch_size=2,
                             sampler=PositionSampler(8, 2, 0, lengths=lengths))  # fmt: skip
    plain = PositionLoader(list(range(8)), batch_size=2, sampler=PositionSampler(8, 2, 0))
    with pytest.raises(RuntimeError, match="grouped_by_length 1 -> 0"):
        plain.load_state_dict(grouped.state_dict())


def test_modality_grouping_keeps_text_only_records_in_steps_of_their_own():
    import random

    draw = random.Random(1)
    n, step = 1000, 16
    # About 3% text-only (negative lengths), as in LLaVA's 665k mix.
    lengths = [(-1 if draw.random() < 0.03 else 1) * draw.randint(20, 200) for _ in range(n)]
    order = epoch_permutation(5, 0, n, lengths, step).tolist()
    assert sorted(order) == list(range(n))
    assert order == epoch_permutation(5, 0, n, lengths, step).tolist()
    steps = [order[i : i + step] for i in range(0, n, step)]
    mixed = [s for s in steps if len({lengths[r] > 0 for r in s}) > 1]
    # One step at most holds both kinds: the two groups' remainders, together.
    assert len(mixed) <= 1
    text_steps = [s for s in steps if all(lengths[r] < 0 for r in s)]
    assert len(text_steps) == sum(n < 0 for n in lengths) // step > 0
    # Without the sign the text-only records are spread over many steps.
    plain = epoch_permutation(5, 0, n, [abs(x) for x in lengths], step).tolist()
    spread = [plain[i : i + step] for i in range(0, n, step)]
    assert sum(len({lengths[r] > 0 for r in s}) > 1 for s in spread) > 5
    loader = PositionSampler(n, step, 5, lengths=lengths)
    assert list(loader)[:step] == [record_at(5, p, n, lengths, step) for p in range(step)]
