"""Periodic wake-ups on a shared grid, so that an idle daemon wakes once for many loops.

Every periodic loop of the daemon (the rules' tick, the MQTT client's housekeeping, a serial
port's presence check, a pile's summary poll) used to sleep its period from whenever it last
ran: each was its own timer, and an idle gateway woke once per loop per period. Here a loop
waits for the next multiple of its period on the event loop's clock instead: loops of the same
period, or of periods that divide each other (1 s and 5 s), are due at the same instant, and
asyncio runs every timer due by then in one pass: one wake-up (issue 17: an idle daemon
sleeps). A loop keeps its period; only its phase moves, by less than one period, once.

It never sleeps longer than the period asked for, and never busy-waits.
"""

from __future__ import annotations

import asyncio
import math


def after(t: float, period: float) -> float:
    """The first multiple of ``period`` later than ``t`` (``-inf`` for ``t = -inf``: at once)."""
    if t == -math.inf:
        return t
    # A ``t`` that is a multiple computed in floats (0.7 / 0.1 = 6.999…) counts as that
    # multiple: else its "next" would be itself, and a loop would run twice at once.
    return (math.floor(t / period + 1e-6) + 1) * period


async def tick(period: float) -> None:
    """Sleep until the next multiple of ``period`` on the loop's clock."""
    loop = asyncio.get_running_loop()
    await until(after(loop.time(), period))


async def until(when: float) -> None:
    """Sleep until ``when`` on the loop's clock; at the same ``when``, timers fire together
    (``asyncio.sleep`` would add its own call time to each)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    handle = loop.call_at(when, _wake, done)
    try:
        await done
    finally:
        handle.cancel()


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
