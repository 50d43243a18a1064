"""The charger watch: the port blocks of a hot pile, read at the fast period.

The summary block names only the hottest port. With one port hot, or cut for heat and still
cooling, a second port crossing the cut threshold hides behind it until the next full read
(``slow_seconds``, or tens of seconds on a line the summaries fill). While
``readings.watch_cause`` finds a reason (a reading at or above ``watch_celsius``, a port in the
pile's own over-temperature fault, a hottest reading from a broken sensor), the pile's port
blocks are read after every summary read of that pile (so at the fast period, or once per
round on a line the summaries fill) at ``Priority.WATCH`` and judged one request at a time, so
the overheat rule sees every port's crossing within about the bound of the first. Only the
ports a cut could still open are read: those whose relay may be closed.

It decides from readings only, never from why a relay was opened. Its line time is capped by
the scheduler (``Line(watch_share=...)``), so a hot day that puts every pile under watch cannot
stretch the summary round that sees the first port of every pile. A pile with nothing hot
costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from drivers.modbus import readings as rd
from drivers.modbus.line import Priority
from drivers.modbus.transport import ExceptionReply
from gatewayd.errors import TransientError

if TYPE_CHECKING:
    from drivers.modbus.pile import PileSession

log = logging.getLogger("gatewayd.drivers.modbus")


class PortWatch:
    """One pile's watch: ``update()`` after every reading, ``run()`` as one of its loops."""

    def __init__(self, pile: PileSession) -> None:
        self.pile = pile
        self.watching = False
        self._due = asyncio.Event()

    def update(self, *, summary: bool = False) -> None:
        """Decide again from the pile's readings; after a summary read, a sweep is due.

        Paced by the pile's own summaries, not by the clock: on a line the summaries fill, a
        clock-paced watch would take its whole share of the line while each summary round
        stretched, and the first port of every pile would wait longer."""
        self._decide()
        if summary and self.watching:
            self._due.set()

    def _decide(self) -> None:
        pile = self.pile
        cause = rd.watch_cause(
            self.watching,
            pile.summary,
            pile.ports.values(),
            pile.timing.watch_celsius,
            set(self.ports()),
        )
        if (cause is not None) == self.watching:
            return
        self.watching = cause is not None
        if cause is not None:
            log.info("%s: reading its powered ports at the fast period: %s", pile.device, cause)
        else:
            below = pile.timing.watch_celsius - rd.WATCH_HYSTERESIS_C
            log.info("%s: every port below %g °C again: watch ended", pile.device, below)

    def ports(self) -> list[int]:
        """The ports a sweep reads: those whose relay may be closed."""
        pile = self.pile
        return rd.watch_ports(pile.ports_n, pile.relays, pile.ports, pile.summary)

    async def run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()  # summaries that come during a sweep ask for one more, not many
            if not self.watching:
                continue
            try:
                await self.read()
            except (TransientError, ExceptionReply) as exc:
                log.debug("%s: watch read failed: %s", self.pile.device, exc)

    async def read(self) -> None:
        """The blocks of the ports a cut could still open, judged one request at a time: a
        port's crossing goes to the rules as soon as its block arrives, while the next request
        may still wait behind summaries.

        Only ports whose relay may be closed are read (``readings.watch_ports``): an open relay
        carries no current, so there is nothing to cut, and each port left out saves the line
        its 8 registers every round. Nearby ports share a request (``max_gap``): on the EBC map
        a port's registers are one 8-register block, and skipping a block inside a request
        costs less than another request. The relays are not read: they change only by this
        driver's own writes (each read back at once) or by the pile's trips (which show in the
        port state just read), and a port the pile switched on shows in the summary's charging
        bitmap. (A pile hot at start-up has its relays read once first: the state published never
        says a relay is unknown.) Its readings go to the uplink's report by exception like any
        other (a hot socket's reading that made a rule act is sent at once, and only what moved
        past a deadband otherwise); the retained state changes only when a port did."""
        pile = self.pile
        if not pile.relays:  # hot from start-up, before the first full read: one coil read
            await pile.read_relays(Priority.WATCH)
        for start, count in pile.plan(self.ports()):
            await pile.read_span(Priority.WATCH, start, count)
            # Ports between two watched ones arrive too (a skipped block); judge them as well.
            every = range(1, pile.ports_n + 1)
            arrived = [p for p in every if _within(pile.profile.port_span(p), start, count)]
            if pile.judge(arrived, pile.relays, telemetry=True):
                pile.publish_state()  # a port changed state: say so now, not at the next read


def _within(span: tuple[int, int], start: int, count: int) -> bool:
    return start <= span[0] and span[0] + span[1] <= start + count
