"""The outbox: messages bound for the broker wait here until the broker acknowledges them.

A message leaves only on PUBACK (QoS 1), so delivery is at-least-once; messages go out in the
order they came in. This is the in-memory outbox; its face (put / next / sent / acked /
requeue) is what a durable one must offer too.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    created: float = field(default_factory=time.time)
    seq: int = 0


class MemoryOutbox:
    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._pending: deque[Message] = deque()
        self._inflight: OrderedDict[int, Message] = OrderedDict()
        self._seq = 0
        self.dropped = 0

    def put(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self._seq += 1
        if len(self._pending) >= self.limit:
            self._pending.popleft()  # bounded: the oldest goes first
            self.dropped += 1
        self._pending.append(Message(topic, payload, qos, seq=self._seq))

    def next(self) -> Message | None:
        return self._pending[0] if self._pending else None

    def sent(self, msg: Message, mid: int) -> None:
        """``msg`` (the head) was handed to the broker connection under ``mid``."""
        self._pending.popleft()
        self._inflight[mid] = msg

    def acked(self, mid: int) -> None:
        self._inflight.pop(mid, None)

    def requeue(self) -> None:
        """The connection dropped: unacknowledged messages go back in front, in order."""
        self._pending.extendleft(reversed(list(self._inflight.values())))
        self._inflight.clear()

    @property
    def depth(self) -> int:
        return len(self._pending) + len(self._inflight)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def oldest_age(self, now: float | None = None) -> float:
        heads = [m.created for m in (*self._inflight.values(), *list(self._pending)[:1])]
        return ((now or time.time()) - min(heads)) if heads else 0.0
