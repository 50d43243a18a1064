"""The outbox: nothing bound for the broker is lost while the link is down.

Classes of service (docs/outbox.md argues the design):

- lane URGENT: critical and warning events, access-audit events, command results — durable,
  never dropped while disk remains, sent first;
- lane INFO: other events — durable, sent after URGENT; the oldest go first under the budget;
- telemetry: memory only, bounded, with a TTL, sent last; drops are counted.

A message is published at once and written by a group commit ``window`` seconds later unless
the broker has acknowledged it by then, so with the broker up most events never touch the SD
card. A message leaves the outbox only on PUBACK (at-least-once; the event ``id`` lets the
platform drop duplicates). Disk I/O runs on one executor thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gatewayd.segments import Record, SegmentWriter, list_segments, scan

log = logging.getLogger("gatewayd.outbox")

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
        self.queue: deque[Message] = deque()  # not yet sent, in order
        self.segments: list[Segment] = []
        self.watermark = 0  # every seq <= this in this lane is acknowledged or dropped
        self.spilled = 0  # messages on disk only, after the queue's tail
        self.spill_from = 0  # first seq of the spilled run
        self.dropped = 0


class Outbox:
    def __init__(
        self,
        directory: str,
        budget_bytes: int = 64 << 20,
        window: float = 0.1,
        telemetry_max: int = 2000,
        telemetry_ttl: float = 600.0,
        on_full: Callable[[bool], None] = lambda _full: None,
    ) -> None:
        os.makedirs(directory, mode=0o750, exist_ok=True)
        self.directory = directory
        self.budget = budget_bytes
        self.window = window
        self.telemetry_ttl = telemetry_ttl
        self.on_full = on_full
        self.full = False
        self.disk_error: str | None = None
        self.lanes = {n: Lane(n) for n in LANES}
        self.inflight: OrderedDict[int, Message] = OrderedDict()
        self.telemetry: deque[Message] = deque(maxlen=telemetry_max)
        self.telemetry_dropped = 0
        self.unwritten: list[Message] = []
        self._committing: list[Message] = []
        self.seq = 0
        self.bytes_written = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-io")
        self._writers = {n: SegmentWriter(directory, n) for n in LANES}
        self._marks_path = os.path.join(directory, "acked.json")
        self._marks_saved: tuple[int, ...] = ()
        self._marks_at = 0.0
        self._recover()

    # -- intake --------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1, lane: int = INFO) -> None:
        self.seq += 1
        msg = Message(topic, payload, qos, lane, self.seq)
        q = self.lanes[lane]
        if q.spilled or len(q.queue) >= MEMORY_MESSAGES:
            if not q.spilled:
                q.spill_from = msg.seq
            q.spilled += 1  # kept on disk only; read back when the queue drains
        else:
            q.queue.append(msg)
        self.unwritten.append(msg)

    def put_telemetry(self, topic: str, payload: bytes) -> None:
        self._expire_telemetry()
        if len(self.telemetry) == self.telemetry.maxlen:
            self.telemetry_dropped += 1  # the oldest goes
        self.telemetry.append(Message(topic, payload, qos=0, lane=-1))

    def _expire_telemetry(self) -> None:
        """Readings older than the TTL are worth nothing to anyone: drop and count them."""
        horizon = time.time() - self.telemetry_ttl
        while self.telemetry and self.telemetry[0].created < horizon:
            self.telemetry.popleft()
            self.telemetry_dropped += 1

    # -- sending -------------------------------------------------------------------------

    def next(self) -> Message | None:
        """The message to send next: urgent first, then info, then fresh telemetry."""
        for n in LANES:
            q = self.lanes[n]
            if not q.queue and q.spilled:
                self._refill(q)
            if q.queue:
                return q.queue[0]
        self._expire_telemetry()
        return self.telemetry[0] if self.telemetry else None

    def sent(self, msg: Message, mid: int) -> None:
        if msg.lane < 0:
            self.telemetry.popleft()  # QoS 0: handed over is as good as it gets
            return
        self.lanes[msg.lane].queue.popleft()
        self.inflight[mid] = msg

    def acked(self, mid: int) -> None:
        msg = self.inflight.pop(mid, None)
        if msg is not None:
            msg.acked = True

    def requeue(self) -> None:
        """The connection dropped: unacknowledged messages go back in front, in order."""
        for msg in reversed(self.inflight.values()):
            self.lanes[msg.lane].queue.appendleft(msg)
        self.inflight.clear()

    # -- figures -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return sum(len(q.queue) + q.spilled for q in self.lanes.values()) + len(self.inflight)

    def oldest_age(self, now: float | None = None) -> float:
        heads = [m.created for m in self.inflight.values()]
        heads += [q.queue[0].created for q in self.lanes.values() if q.queue]
        return ((now or time.time()) - min(heads)) if heads else 0.0

    @property
    def disk_bytes(self) -> int:
        return sum(s.nbytes for q in self.lanes.values() for s in q.segments)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {
            "depth": self.depth,
            "inflight": len(self.inflight),
            "oldest_age_seconds": self.oldest_age(),
            "disk_bytes": self.disk_bytes,
            "telemetry_buffered": len(self.telemetry),
            "dropped_telemetry": self.telemetry_dropped,
        }
        for n, q in self.lanes.items():
            out[f"depth_{LANE_NAMES[n]}"] = len(q.queue) + q.spilled
            out[f"dropped_{LANE_NAMES[n]}"] = q.dropped
        return out

    # -- group commit --------------------------------------------------------------------

    async def run(self) -> None:
        """Commit every ``window`` seconds until cancelled; then a last commit."""
        try:
            while True:
                await asyncio.sleep(self.window)
                await self.commit()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.commit(final=True))

    async def commit(self, final: bool = False) -> None:
        batch = [m for m in self.unwritten if not m.acked]
        self.unwritten = []
        self._committing = batch
        marks = self._marks()
        save_marks = marks != self._marks_saved and (
            final or time.monotonic() - self._marks_at > 2.0
        )
        doomed = self._doomed()
        if not batch and not save_marks and not doomed:
            return
        loop = asyncio.get_running_loop()
        try:
            written = await loop.run_in_executor(
                self._io, self._write, batch, doomed, marks if save_marks else None
            )
        except OSError as exc:
            self._committing = []
            self.unwritten = batch + self.unwritten  # kept in memory; tried again next window
            if self.disk_error is None:
                log.error("outbox cannot write to %s: %s", self.directory, exc)
            self.disk_error = str(exc)
            self._enforce_budget(len(self.unwritten))
            return
        self._committing = []
        self.disk_error = None
        if save_marks:
            self._marks_saved, self._marks_at = marks, time.monotonic()
        for m in batch:
            m.written = True
        for n, segs in written.items():
            q = self.lanes[n]
            for path, last, nbytes in segs:
                if q.segments and q.segments[-1].path == path:
                    q.segments[-1].last_seq, q.segments[-1].nbytes = last, nbytes
                else:
                    q.segments.append(Segment(path, last, nbytes))
        for q in self.lanes.values():
            q.segments = [s for s in q.segments if s.path not in doomed]
        self._enforce_budget(0)

    def _write(
        self, batch: list[Message], doomed: list[str], marks: tuple[int, ...] | None
    ) -> dict[int, list[tuple[str, int, int]]]:
        out: dict[int, list[tuple[str, int, int]]] = {}
        # Deletions first: a wholly acknowledged segment the writer still holds is closed and
        # removed, and this batch starts a fresh one (doomed was decided before this batch).
        for path in doomed:
            for w in self._writers.values():
                if w.path == path:
                    w.close()
                    w.path = ""
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for n in LANES:
            records = [
                Record(m.seq, m.created, m.lane, m.qos, m.topic, m.payload)
                for m in batch
                if m.lane == n
            ]
            if not records:
                continue
            w = self._writers[n]
            before = w.path, w.size
            w.append(records)
            w.sync()
            self.bytes_written += w.size - (before[1] if before[0] == w.path else 0)
            out.setdefault(n, []).append((w.path, records[-1].seq, w.size))
        if marks is not None:
            tmp = self._marks_path + ".tmp"
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump({"watermarks": marks[:-1], "seq": marks[-1]}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._marks_path)
        return out

    def _marks(self) -> tuple[int, ...]:
        marks = []
        for n, q in self.lanes.items():
            firsts = [m.seq for m in self.inflight.values() if m.lane == n]
            if q.queue:
                firsts.append(q.queue[0].seq)
            if q.spilled:
                firsts.append(q.spill_from)
            q.watermark = max(q.watermark, (min(firsts) - 1) if firsts else self.seq)
            marks.append(q.watermark)
        return (*marks, self.seq)

    def _doomed(self) -> list[str]:
        """Segments wholly acknowledged, the one a writer holds included (see _write)."""
        return [
            s.path for q in self.lanes.values() for s in q.segments if s.last_seq <= q.watermark
        ]

    # -- the disk budget -----------------------------------------------------------------

    def _enforce_budget(self, pending: int) -> None:
        info = self.lanes[INFO]
        dropping = False
        while self.disk_bytes > self.budget and len(info.segments) > 1:
            dropping = True
            dropped = self._drop_segment(info, info.segments[0])  # the oldest info data first
            log.warning(
                "outbox over its %d-byte budget: dropped %d info messages", self.budget, dropped
            )
        while pending > MEMORY_MESSAGES and info.queue:  # disk failing: bound the memory too
            info.queue.popleft()
            info.dropped += 1
            pending -= 1
            dropping = True
        # Reaching the budget is worth an alarm even when dropping info data resolves it; it
        # clears once the backlog is well under the budget again.
        if dropping or self.disk_bytes > self.budget or self.disk_error is not None:
            full = True
        elif self.disk_bytes < 0.8 * self.budget:
            full = False
        else:
            full = self.full
        if full != self.full:
            self.full = full
            self.on_full(full)

    def _drop_segment(self, q: Lane, seg: Segment) -> int:
        """Drop a whole segment of ``q``: its messages, queued or spilled, count as dropped."""
        dropped = 0
        while q.queue and q.queue[0].seq <= seg.last_seq:
            q.queue.popleft()
            dropped += 1
        if q.spilled and q.spill_from <= seg.last_seq:
            on_disk = sum(1 for r, _ in scan(seg.path) if r.seq >= q.spill_from)
            q.spilled -= on_disk
            dropped += on_disk
            q.spill_from = seg.last_seq + 1 if q.spilled else 0
        q.watermark = max(q.watermark, seg.last_seq)
        q.segments.remove(seg)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(seg.path)
        q.dropped += dropped
        return dropped

    # -- reading back ----------------------------------------------------------------------

    def _refill(self, q: Lane) -> None:
        """Move the next part of a spilled run back into the queue. Spilled messages are one
        contiguous run of seqs: the older part on disk, the newer still in memory waiting for
        a commit. Reading segments blocks briefly, once per MEMORY_MESSAGES/2 messages."""
        want = MEMORY_MESSAGES // 2
        start = q.spill_from
        mem = [m for m in (*self._committing, *self.unwritten) if m.lane == q.n and m.seq >= start]
        below = mem[0].seq if mem else self.seq + 1  # disk holds the spilled seqs under this
        got: list[Message] = []
        for seg in q.segments:
            if seg.last_seq < start or len(got) >= want:
                continue
            for rec, _end in scan(seg.path):
                if start <= rec.seq < below and len(got) < want:
                    got.append(
                        Message(
                            rec.topic,
                            rec.payload,
                            rec.qos,
                            rec.lane,
                            rec.seq,
                            rec.created,
                            written=True,
                        )
                    )
        got += mem[: max(0, want - len(got))]
        q.queue.extend(got)
        q.spilled = max(0, q.spilled - len(got))
        q.spill_from = got[-1].seq + 1 if q.spilled and got else (start if q.spilled else 0)

    def _recover(self) -> None:
        marks: list[int] = [0, 0]
        try:
            with open(self._marks_path) as f:
                saved = json.load(f)
            marks = [int(x) for x in saved["watermarks"]]
            self.seq = int(saved["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        recovered = 0
        for n in LANES:
            q = self.lanes[n]
            q.watermark = marks[n] if n < len(marks) else 0
            for path in list_segments(self.directory, n):
                last, end = 0, 0
                for rec, end in scan(path):  # noqa: B007 - the last offset is the valid end
                    last = rec.seq
                    self.seq = max(self.seq, rec.seq)
                    if rec.seq > q.watermark:
                        recovered += 1
                        if len(q.queue) < MEMORY_MESSAGES and not q.spilled:
                            q.queue.append(
                                Message(
                                    rec.topic,
                                    rec.payload,
                                    rec.qos,
                                    n,
                                    rec.seq,
                                    rec.created,
                                    written=True,
                                )
                            )
                        else:
                            q.spill_from = q.spill_from or rec.seq
                            q.spilled += 1
                if last == 0 or last <= q.watermark:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                q.segments.append(Segment(path, last, end))
                self._writers[n].adopt(path, end)  # the newest ends up adopted
        self._marks_saved = self._marks()
        if recovered:
            log.info("outbox: %d messages waiting from before the restart", recovered)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._io.shutdown(wait=True)
