"""The shared grid of periodic wake-ups (gatewayd/ticks.py): loops of periods that divide each
other wake at the same instant, and a loop on its grid never runs twice at once."""

from __future__ import annotations

import asyncio

from gatewayd import ticks


def test_the_next_tick_of_a_multiple_computed_in_floats_is_the_next_one() -> None:
    # 7 × 0.1 is 0.7000000000000001 and 0.7 / 0.1 is 6.999999999999999: a poll at 0.7 s
    # whose next tick came out as 0.7 again would read the pile twice in a row.
    for period in (0.1, 0.2, 0.3, 1.0, 5.0):
        for k in range(1, 50_000, 7):
            t = k * period
            assert t + period / 2 < ticks.after(t, period) < t + 1.5 * period, (k, period)
    assert ticks.after(float("-inf"), 1.0) == float("-inf")  # never ran: at once


def test_loops_of_dividing_periods_wake_at_the_same_instant() -> None:
    woke: dict[str, list[float]] = {"1 s": [], "0.5 s": [], "0.25 s": []}

    async def loop(name: str, period: float, n: int) -> None:
        for _ in range(n):
            await ticks.tick(period)
            woke[name].append(asyncio.get_running_loop().time())

    async def main() -> None:
        await asyncio.gather(loop("1 s", 1.0, 1), loop("0.5 s", 0.5, 2), loop("0.25 s", 0.25, 4))

    asyncio.run(main())
    # The whole second is one instant for all three: one wake-up, not three.
    second = woke["1 s"][0]
    assert min(second % 1.0, 1.0 - second % 1.0) < 0.05
    for name in ("0.5 s", "0.25 s"):
        assert min(abs(t - second) for t in woke[name]) < 0.005, (name, woke)
