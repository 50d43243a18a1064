"""The outbox's lanes: one queue per class of service, and the messages in them.

``URGENT`` (critical and warning events, access decisions, command results) is sent before
``INFO``; each keeps its order. A lane holds at most ``MEMORY_MESSAGES`` in memory; a longer
backlog waits on disk (``spilled``) and is read back in order as the queue drains.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

URGENT, INFO = 0, 1
LANES = (URGENT, INFO)
LANE_NAMES = {URGENT: "urgent", INFO: "info"}
MEMORY_MESSAGES = 20_000  # per lane; a longer backlog waits on disk and is read back in order


@dataclass(slots=True, eq=False)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    lane: int = INFO
    seq: int = 0
    created: float = field(default_factory=time.time)
    acked: bool = False
    written: bool = False


@dataclass(slots=True)
class Segment:
    path: str
    last_seq: int
    nbytes: int


class Lane:
    def __init__(self, n: int) -> None:
        self.n = n
        self.memory = MEMORY_MESSAGES  # messages held in memory before the rest wait on disk
        self.queue: deque[Message] = deque()  # not yet sent, in order
        self.segments: list[Segment] = []
        self.watermark = 0  # every seq <= this in this lane is acknowledged or dropped
        self.spilled = 0  # messages on disk only, after the queue's tail
        self.spill_from = 0  # first seq of the spilled run
        self.dropped = 0

    def admit(self, seq: int) -> bool:
        """Whether message ``seq`` joins the queue; if not, it is counted as spilled: kept on
        disk only, read back in order when the queue drains."""
        if self.spilled or len(self.queue) >= self.memory:
            self.spill_from = self.spill_from or seq
            self.spilled += 1
            return False
        return True
