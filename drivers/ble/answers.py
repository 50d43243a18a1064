"""The lock's answers a link is waiting for: the ACK with a command's SEQ, and the STATUS a
status request brings. A lost link fails every one of them at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drivers.ble import protocol as p


class LinkLost(Exception):
    """The BLE link went down while a command was in flight."""


class Answers:
    def __init__(self) -> None:
        self._acks: dict[int, asyncio.Future[p.Ack]] = {}
        self._status: list[asyncio.Future[p.Status]] = []

    @contextmanager
    def expect(
        self, seq: int, status: bool
    ) -> Iterator[tuple[asyncio.Future[p.Ack], asyncio.Future[p.Status] | None]]:
        """Futures for the ACK of ``seq`` (and the next STATUS), forgotten on leaving."""
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[p.Ack] = loop.create_future()
        self._acks[seq] = ack
        stat: asyncio.Future[p.Status] | None = loop.create_future() if status else None
        if stat is not None:
            self._status.append(stat)
        try:
            yield ack, stat
        finally:
            self._acks.pop(seq, None)
            _settle(ack)
            if stat is not None:
                self._status.remove(stat)
                _settle(stat)

    def deliver(self, record: p.Ack | p.Status) -> None:
        if isinstance(record, p.Ack):
            ack = self._acks.get(record.seq)
            if ack is not None and not ack.done():
                ack.set_result(record)
            return
        for fut in self._status:
            if not fut.done():
                fut.set_result(record)

    def fail(self) -> None:
        """The link is gone: nothing pending will be answered."""
        pending: list[asyncio.Future[Any]] = [*self._acks.values(), *self._status]
        for fut in pending:
            if not fut.done():
                fut.set_exception(LinkLost())


def _settle(fut: asyncio.Future[Any]) -> None:
    """Cancel a future nobody will await, or mark its exception as seen (a lost link fails
    every pending future, and asyncio complains about exceptions nobody retrieved)."""
    if not fut.done():
        fut.cancel()
    elif not fut.cancelled():
        fut.exception()
