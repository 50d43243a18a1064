"""Supervision of drivers: one failing bus never stops the others.

Each bus runs in its own task. A driver that raises (or returns) is reported and a fresh
instance starts after a capped, jittered backoff; one that ran well for a while starts again
from the shortest delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gatewayd.backoff import Backoff
from gatewayd.driver import Driver

log = logging.getLogger("gatewayd.supervisor")

HEALTHY_AFTER = 60.0  # s of running before a crash counts as a fresh failure


class Supervised:
    def __init__(
        self, bus: str, factory: Callable[[], Driver], on_failure: Callable[[str, str, int], None]
    ) -> None:
        self.bus = bus
        self.factory = factory
        self.on_failure = on_failure
        self.driver: Driver | None = None
        self.restarts = 0
        self.backoff = Backoff(first=1.0, cap=60.0)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.driver = self.factory()
                await self.driver.run()
                reason = "driver stopped by itself"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one bus is contained here
                reason = f"{type(exc).__name__}: {exc}"
                log.exception("bus %s: driver failed", self.bus)
            self.driver = None
            if time.monotonic() - started > HEALTHY_AFTER:
                self.backoff.reset()
            self.restarts += 1
            delay = self.backoff.next()
            log.warning("bus %s: restarting its driver in %.1f s (%s)", self.bus, delay, reason)
            self.on_failure(self.bus, reason, self.restarts)
            await asyncio.sleep(delay)
