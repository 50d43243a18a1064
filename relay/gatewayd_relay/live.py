"""Live pages: Server-Sent Events to the pages open on *this* process, fed by this process's
own MQTT subscription.

A page never misses a change made while it is open: the stream's first frame is ``sync``,
sent once the page is subscribed, and the page (re)loads its lists when it gets one, on the
first connection and after every reconnection; an update is sent after its commit, so what
happened before the ``sync`` is in those lists and what happens after it comes live. A page
that stops reading has a bounded queue: rather than lose updates silently, the queue is
emptied and the page told ``sync`` again (never the process's memory)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

QUEUE = 200
KEEPALIVE = 15.0
#: "You are subscribed from here on: (re)load your lists."
SYNC = "event: sync\ndata: {}\n\n"


@dataclass(eq=False)
class Listener:
    #: Decides whether this page may see an update about house ``house_id``.
    may_see: Callable[[int], bool]
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class Broadcaster:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def __len__(self) -> int:
        return len(self._listeners)

    def send(self, house_id: int, kind: str, body: dict[str, Any]) -> None:
        """Call on the event loop, after the change is committed."""
        if not self._listeners:
            return
        frame = f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
        for listener in self._listeners:
            if not listener.may_see(house_id):
                continue
            if listener.queue.full():
                while not listener.queue.empty():
                    listener.queue.get_nowait()
                listener.queue.put_nowait(SYNC)
            listener.queue.put_nowait(frame)

    async def stream(self, may_see: Callable[[int], bool]) -> AsyncGenerator[str]:
        listener = Listener(may_see)
        self._listeners.add(listener)
        try:
            # The browser reports the stream open on its headers, sent before this runs:
            # only this frame says the page is subscribed.
            yield "retry: 2000\n\n" + SYNC
            while True:
                try:
                    yield await asyncio.wait_for(listener.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self._listeners.discard(listener)
