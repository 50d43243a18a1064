"""The outbox's lanes: one queue per class of service, and the messages in them.

``CRITICAL`` (critical events: a fire, a smoke alarm) is sent before ``URGENT`` (warning
events, access decisions, command results), which is sent before ``INFO``; each keeps its
order. A lane holds at most ``MEMORY_MESSAGES`` in memory; a longer backlog waits on disk
(``spilled``) and is read back in order as the queue drains.

A lane's number is what the disk knows it by (segment names ``lane<n>-…``, each record's lane
byte, its place in the watermarks list), so numbers are never renumbered: a new lane takes the
next number, whatever its priority, and an outbox written before it still loads.
``PRIORITY`` is the sending order. Reading and dropping segments here block: callers run
them where the outbox says they may.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field

from gatewayd.uplink.outbox_store import read_records
from gatewayd.uplink.segments import Record

URGENT, INFO, CRITICAL = 0, 1, 2  # CRITICAL came last (issue 14): its number is its age
LANES = (URGENT, INFO, CRITICAL)  # by number: the watermarks list's order
PRIORITY = (CRITICAL, URGENT, INFO)  # the sending order
LANE_NAMES = {URGENT: "urgent", INFO: "info", CRITICAL: "critical"}
MEMORY_MESSAGES = 20_000  # per lane; a longer backlog waits on disk and is read back in order


@dataclass(slots=True, eq=False)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    lane: int = INFO
    seq: int = 0
    created: float = field(default_factory=time.time)  # an event's: its ts (see Outbox.put)
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

    def drop_segment(self, seg: Segment) -> int:
        """Drop a whole segment of this lane (over the disk budget): its messages, queued or
        spilled, count as dropped."""
        dropped = 0
        while self.queue and self.queue[0].seq <= seg.last_seq:
            self.queue.popleft()
            dropped += 1
        if self.spilled and self.spill_from <= seg.last_seq:
            on_disk = len(read_records(seg.path, after=self.spill_from - 1))
            self.spilled -= on_disk
            dropped += on_disk
            self.spill_from = seg.last_seq + 1 if self.spilled else 0
        self.watermark = max(self.watermark, seg.last_seq)
        self.segments.remove(seg)
        with contextlib.suppress(OSError):  # if it stays, it is not ours to count any more
            os.unlink(seg.path)
        self.dropped += dropped
        return dropped


def from_record(rec: Record) -> Message:
    """A message read back from disk."""
    return Message(rec.topic, rec.payload, rec.qos, rec.lane, rec.seq, rec.created, written=True)
