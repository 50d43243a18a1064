"""Read planning: the fewest requests, never more than 125 registers, never through a hole."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.coalesce import coalesce
from drivers.modbus.profiles import EBC


def covered(plan: list[tuple[int, int]]) -> set[int]:
    return {a for s, n in plan for a in range(s, s + n)}


def test_whole_map_of_a_12_port_pile_is_three_input_reads() -> None:
    spans = [EBC.pile_span(), EBC.summary_span()] + [EBC.port_span(p) for p in range(1, 13)]
    plan = coalesce(spans, 125, max_gap=16, readable=EBC.readable(12))
    # 0..6, the 96 port registers, 256..261: the holes between are refused by the pile.
    assert plan == [(0, 7), (16, 96), (256, 6)]


def test_sixteen_ports_need_two_reads_for_128_registers() -> None:
    spans = [EBC.port_span(p) for p in range(1, 17)]
    plan = coalesce(spans, 125, readable=EBC.readable(16))
    assert len(plan) == 2
    assert all(n <= 125 for _, n in plan)
    assert covered(plan) == set(range(16, 16 + 128))


def test_without_a_readable_map_a_small_hole_is_read_through() -> None:
    assert coalesce([(0, 7), (16, 8)], 125, max_gap=16) == [(0, 24)]
    assert coalesce([(0, 7), (16, 8)], 125, max_gap=8) == [(0, 7), (16, 8)]


def test_sparse_ports_merge_only_across_small_gaps() -> None:
    spans = [EBC.port_span(p) for p in (1, 2, 4, 12)]
    plan = coalesce(spans, 125, max_gap=8, readable=EBC.readable(12))
    assert plan == [(16, 32), (104, 8)]  # ports 1-4 read as one (port 3 rides along)


def test_wanted_address_outside_the_map_is_a_profile_error() -> None:
    with pytest.raises(ValueError, match="outside every readable area"):
        coalesce([(8, 1)], readable=EBC.readable(12))


@given(
    st.lists(st.tuples(st.integers(0, 600), st.integers(1, 40)), min_size=1, max_size=12),
    st.integers(1, 125),
    st.integers(0, 30),
)
def test_plan_covers_everything_within_limits_and_is_minimal(
    spans: list[tuple[int, int]], max_count: int, max_gap: int
) -> None:
    plan = coalesce(spans, max_count, max_gap)
    wanted = {a for s, n in spans for a in range(s, s + n)}
    assert wanted <= covered(plan)
    assert all(1 <= n <= max_count for _, n in plan)
    # A lower bound no plan can beat: each maximal run split by gaps > max_gap needs
    # ceil(run length / max_count) requests at least, and greedy never does worse than the
    # runs computed the same way.
    runs: list[list[int]] = []
    for a in sorted(wanted):
        if runs and a - runs[-1][-1] - 1 <= max_gap:
            runs[-1].append(a)
        else:
            runs.append([a])
    assert len(plan) >= len(runs)
    assert len(plan) <= sum(math.ceil((r[-1] - r[0] + 1) / max_count) for r in runs)
