"""The per-bus scheduler: one request on the wire at a time, most urgent first.

An RS-485 line carries one transaction at a time, so every request of every pile on a bus
goes through one priority queue served by one worker. Safety writes (relay off, e-stop) jump
ahead of polls and wait at most for the transaction already on the wire. Between transactions
the worker keeps the line quiet for the inter-frame gap (3.5 characters on RTU).

Polls of lower priority cannot starve: a request that has waited longer than ``age_seconds``
may be served before fresher ones of higher priority (never before safety), but only within a
budget of ``aged_share`` of the line's time, one at a time (the budget never saves up).
Without that every starved full read would jump the queue at once and hold the summary polls
— the ones that see heat — for seconds.

Watch reads (the powered ports of a pile with a hot port, see ``watch``) rank below the summary
polls but may go ahead of them within ``watch_share`` of the line's time: on a line the
summaries already fill they would otherwise never run, and without the cap a hot summer day
that put every pile under watch would stretch the summary round, and so the first-port bound
of every pile, several times over.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

from drivers.modbus.transport import Link

T = TypeVar("T")

UTILISATION_WINDOW = 60.0  # s over which a line's utilisation is reported
# An inter-frame silence this long gives the event loop its turns by itself (see ``run``).
MIN_SILENCE_FOR_TURNS = 0.001


class Priority(IntEnum):
    SAFETY = 0  # relay off, e-stop: ahead of everything
    COMMAND = 1  # remote commands, start-up configuration writes
    FAST = 2  # the summary block of every pile, every fast period
    WATCH = 3  # a watched pile's powered ports, after each of its summaries (watch_share)
    CHANGED = 4  # port blocks right after a summary showed a change
    SLOW = 5  # the periodic full read


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    queued: float = field(compare=False)
    call: Callable[[Link], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    wire: float = field(compare=False, default=0.0)


class _Share:
    """Line time some requests may take ahead of their rank: it accrues at ``share`` of wall
    time and is capped at zero, so a quiet minute does not buy a burst later. A request may go
    when the account is not in debt; its wire time is then owed."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._balance = 0.0
        self._at = time.monotonic()

    def available(self, now: float) -> bool:
        self._balance = min(0.0, self._balance + (now - self._at) * self.share)
        self._at = now
        return self._balance >= 0.0

    def spend(self, wire: float) -> None:
        self._balance -= wire


@dataclass
class LineStats:
    transactions: int = 0
    wire_seconds: float = 0.0  # what the transactions cost at the line rate, gaps included
    busy_seconds: float = 0.0  # wall time from first send to the end of the last gap
    max_wait: dict[int, float] = field(default_factory=dict)  # per priority, queue wait
    by_priority: dict[int, int] = field(default_factory=dict)  # transactions per priority


class Line:
    """Serialises requests to one ``Link``. ``run()`` is the worker; ``call()`` submits."""

    def utilisation(self) -> float:
        """Share of the last minute the line was busy (frames and the gaps after them)."""
        horizon = time.monotonic() - UTILISATION_WINDOW
        busy = sum(b for end, b in self._recent if end >= horizon)
        return min(1.0, busy / UTILISATION_WINDOW)

    def __init__(
        self,
        link: Link,
        *,
        age_seconds: float = 5.0,
        aged_share: float = 0.1,
        watch_share: float = 0.5,
    ) -> None:
        self.link = link
        self.age_seconds = age_seconds
        self._aged = _Share(aged_share)
        self._watch = _Share(watch_share)
        self.stats = LineStats()
        self._recent: deque[tuple[float, float]] = deque()  # (end, busy s) of recent ones
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._busy = False  # a transaction holds the line (the worker's or a caller's own)
        self._quiet_at = 0.0  # when the line has been silent long enough for the next frame

    async def call(
        self,
        priority: Priority,
        call: Callable[[Link], Awaitable[T]],
        wire_seconds: float = 0.0,
    ) -> T:
        """Run ``call`` (one transaction) when its turn comes; return its result or raise."""
        ahead = bool(self._heap) and (
            priority > Priority.SAFETY or self._heap[0].priority == Priority.SAFETY
        )
        if not self._busy and not ahead:
            # The line free and nobody to serve first (nobody waiting, or this is a safety
            # write and no other is queued): the caller runs it itself. That saves two task
            # switches through the worker on every uncontended request, and a cut does not
            # wait for the worker's turn behind whatever else the event loop has queued.
            self._busy = True
            try:
                return await self._transact(call, time.monotonic(), int(priority), wire_seconds)
            finally:
                self._busy = False
                if self._heap:
                    self._wake.set()
        loop = asyncio.get_running_loop()
        job = _Job(
            int(priority),
            next(self._seq),
            time.monotonic(),
            call,
            loop.create_future(),
            wire_seconds,
        )
        heapq.heappush(self._heap, job)
        self._wake.set()
        return await job.future  # type: ignore[no-any-return]

    async def _transact(
        self, call: Callable[[Link], Awaitable[T]], queued: float, priority: int, wire: float
    ) -> T:
        delay = self._quiet_at - time.monotonic()
        if delay > 0:  # the inter-frame silence after the previous transaction
            await asyncio.sleep(delay)
        start = time.monotonic()
        if start - queued > self.stats.max_wait.get(priority, 0.0):
            self.stats.max_wait[priority] = start - queued
        self.stats.by_priority[priority] = self.stats.by_priority.get(priority, 0) + 1
        try:
            result = await call(self.link)
        finally:
            end = time.monotonic()
            # The silence runs from the reply's last bytes (a broadcast has none: from now).
            heard = self.link.heard_at
            self._quiet_at = (heard if start <= heard <= end else end) + self.link.gap_seconds
            self.stats.transactions += 1
            self.stats.wire_seconds += wire
            busy = end - start + self.link.gap_seconds
            self.stats.busy_seconds += busy
            self._recent.append((end, busy))
            while self._recent[0][0] < end - UTILISATION_WINDOW:
                self._recent.popleft()
        me = asyncio.current_task()
        # Python 3.11's wait_for (inside pymodbus) can swallow a cancellation that races
        # with a reply; honour it here or the caller would outlive its driver.
        if me is not None and me.cancelling():
            raise asyncio.CancelledError
        return result

    def pending(self) -> int:
        return len(self._heap)

    def _next(self) -> _Job:
        now = time.monotonic()
        head = self._heap[0]
        if head.priority > Priority.SAFETY:
            oldest = min(self._heap, key=lambda j: j.queued)
            aged = now - oldest.queued > self.age_seconds
            if oldest is not head and aged and self._aged.available(now):
                self._aged.spend(oldest.wire)
                return self._take(oldest)
        if head.priority == Priority.FAST and self._watch.available(now):
            watch = min((j for j in self._heap if j.priority == Priority.WATCH), default=None)
            if watch is not None:
                self._watch.spend(watch.wire)
                return self._take(watch)
        return heapq.heappop(self._heap)

    def _take(self, job: _Job) -> _Job:
        self._heap.remove(job)
        heapq.heapify(self._heap)
        return job

    async def run(self) -> None:
        while True:
            while not self._heap or self._busy:
                self._wake.clear()
                await self._wake.wait()
            # The inter-frame silence first, and at least two turns of the event loop (one for
            # the caller to judge the reply just in, one for the cut that judgement spawned to
            # take the line), then the choice: a cut goes first, instead of waiting behind
            # one more poll. On RTU the silence alone is longer than both turns: the loop runs
            # every ready callback before it wakes a timer, so no turn is added to it (each
            # one costs whatever else is ready, which in a fire is a lot).
            silence = self._quiet_at - time.monotonic()
            if silence < MIN_SILENCE_FOR_TURNS:
                await asyncio.sleep(0)
            await asyncio.sleep(max(0.0, silence))
            if not self._heap or self._busy:
                continue
            job = self._next()
            if job.future.done():  # its caller was cancelled while it queued
                continue
            self._busy = True
            try:
                result = await self._transact(job.call, job.queued, job.priority, job.wire)
            except asyncio.CancelledError:
                job.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who decides
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)
            finally:
                self._busy = False

    def fail_pending(self, exc: BaseException) -> None:
        while self._heap:
            job = heapq.heappop(self._heap)
            if not job.future.done():
                job.future.set_exception(exc)
