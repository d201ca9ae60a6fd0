"""Grouping a batch's inputs into model runs: the fewest padded tokens plus run overheads."""

from __future__ import annotations

from services.embedder.chunking import plan_runs


def cost(lengths: list[int], runs: list[list[int]], overhead: int) -> int:
    return sum(overhead + len(run) * max(lengths[i] for i in run) for run in runs)


def test_inputs_of_similar_length_share_one_run():
    assert plan_runs([12, 14, 13, 15], overhead_tokens=12) == [[0, 2, 1, 3]]


def test_one_long_input_gets_a_run_of_its_own_instead_of_padding_everyone():
    lengths = [12] * 31 + [256]
    runs = plan_runs(lengths, overhead_tokens=12)
    assert runs == [list(range(31)), [31]]
    assert cost(lengths, runs, 12) == 12 + 31 * 12 + 12 + 256  # against 12 + 32 * 256 in one run


def test_a_cut_is_made_only_when_the_padding_it_saves_exceeds_a_run_overhead():
    # Joined: 12 + 3 * 20 = 72. Split: (12 + 2 * 10) + (12 + 20) = 64. With overhead 30 joining wins.
    assert plan_runs([10, 20, 10], overhead_tokens=12) == [[0, 2], [1]]
    assert plan_runs([10, 20, 10], overhead_tokens=30) == [[0, 2, 1]]


def test_the_plan_is_the_cheapest_of_every_split_of_the_sorted_inputs():
    lengths = [5, 40, 7, 41, 90, 6, 38, 95]
    runs = plan_runs(lengths, overhead_tokens=12)
    ordered = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = min(cost(lengths, split(ordered, mask), 12) for mask in range(1 << (len(ordered) - 1)))
    assert cost(lengths, runs, 12) == best
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))


def split(ordered: list[int], mask: int) -> list[list[int]]:
    """The sorted inputs cut after position k wherever bit k of mask is set."""
    runs, current = [], [ordered[0]]
    for k, index in enumerate(ordered[1:]):
        if mask >> k & 1:
            runs.append(current)
            current = []
        current.append(index)
    return [*runs, current]


def test_one_input_and_none_are_trivial():
    assert plan_runs([7]) == [[0]]
    assert plan_runs([]) == []
