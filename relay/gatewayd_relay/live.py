"""Live pages: Server-Sent Events to the pages open on *this* process, fed by this process's
own MQTT subscription. Each open page has a bounded queue; a page that stops reading loses
old updates, never the process's memory (the page reloads its lists when it reconnects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

QUEUE = 200
KEEPALIVE = 15.0


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
        """Call on the event loop."""
        if not self._listeners:
            return
        frame = f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
        for listener in self._listeners:
            if not listener.may_see(house_id):
                continue
            if listener.queue.full():
                listener.queue.get_nowait()
            listener.queue.put_nowait(frame)

    async def stream(self, may_see: Callable[[int], bool]) -> AsyncGenerator[str]:
        listener = Listener(may_see)
        self._listeners.add(listener)
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    yield await asyncio.wait_for(listener.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self._listeners.discard(listener)
