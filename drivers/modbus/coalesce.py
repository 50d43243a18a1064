"""Plan the fewest read requests that cover a set of register ranges. Pure; no I/O.

Reading a few unwanted registers is cheaper than another request (on RTU each request costs
two 3.5-character gaps, a turnaround and 5 bytes of framing), so nearby ranges merge across a
gap of at most ``max_gap`` registers. A merge never crosses addresses outside ``readable``:
a device that refuses holes in its map (exception 02) must not be asked for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Span = tuple[int, int]  # (first address, count)


def coalesce(
    spans: Iterable[Span],
    max_count: int = 125,
    max_gap: int = 16,
    readable: Sequence[Span] | None = None,
) -> list[Span]:
    """Cover every address of ``spans`` with the fewest requests of at most ``max_count``.

    Greedy from the lowest address is optimal here: each request starts at the first uncovered
    wanted address and extends as far as the limits allow, so no plan can finish earlier.
    """
    if max_count < 1 or max_gap < 0:
        raise ValueError("max_count must be >= 1 and max_gap >= 0")
    wanted = sorted({a for start, count in spans for a in range(start, start + count)})
    if not wanted:
        return []
    area = _area_lookup(readable)
    if area is not None:
        for addr in wanted:
            area(addr)  # raises for an address no request may cover
    plan: list[Span] = []
    start = end = wanted[0]  # the request being built covers start..end inclusive
    for addr in wanted[1:]:
        gap = addr - end - 1
        fits = addr - start + 1 <= max_count
        same_area = area is None or area(addr) == area(start)
        if fits and gap <= max_gap and same_area:
            end = addr
            continue
        plan.append((start, end - start + 1))
        start = end = addr
    plan.append((start, end - start + 1))
    return plan


def _area_lookup(readable: Sequence[Span] | None) -> _Area | None:
    if readable is None:
        return None
    return _Area(readable)


class _Area:
    """Which readable area an address is in; a wanted address outside every area is an error
    in the caller's profile, caught here rather than as exception 02 from a device."""

    def __init__(self, readable: Sequence[Span]) -> None:
        self.spans = sorted(readable)

    def __call__(self, addr: int) -> int:
        for i, (start, count) in enumerate(self.spans):
            if start <= addr < start + count:
                return i
        raise ValueError(f"address {addr} is outside every readable area")
