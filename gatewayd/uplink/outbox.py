"""The outbox: nothing bound for the broker is lost while the link is down.

Classes of service (docs/outbox.md argues the design):

- lane CRITICAL: critical events (a fire, a smoke alarm): sent first, ahead of any backlog;
- lane URGENT: warning events, access-audit events, command results: sent next;
  both durable, never dropped while disk remains;
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
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gatewayd.uplink.lanes import (
    INFO,
    LANE_NAMES,
    LANES,
    PRIORITY,
    Lane,
    Message,
    Segment,
    from_record,
)
from gatewayd.uplink.outbox_store import Store, load_marks, read_lane, read_records
from gatewayd.uplink.segments import Record, first_seq

log = logging.getLogger("gatewayd.uplink.outbox")

MARKS_EVERY = 2.0  # s: acknowledged watermarks are saved at most this often


class Outbox:
    def __init__(
        self,
        directory: str,
        budget_bytes: int = 64 << 20,
        window: float = 0.1,
        telemetry_max: int = 2000,
        telemetry_ttl: float = 600.0,
        on_full: Callable[[bool], None] = lambda _full: None,
        on_damaged: Callable[[int, str], None] = lambda _n, _path: None,
    ) -> None:
        """Never raises for what is, or is not, on disk: an outbox that cannot write runs from
        memory with ``disk_error`` set and tries again every ``window``."""
        self.directory = directory
        self.budget = budget_bytes
        self.window = window
        self.telemetry_ttl = telemetry_ttl
        self.on_full = on_full
        self.on_damaged = on_damaged
        self.full = False
        self.disk_error: str | None = None  # why the last write failed; None while writes work
        self.damaged_records = 0  # records (or runs of bytes) on disk that did not verify
        self.lanes = {n: Lane(n) for n in LANES}
        self.inflight: OrderedDict[int, Message] = OrderedDict()
        self.telemetry: deque[Message] = deque(maxlen=telemetry_max)
        self.telemetry_dropped = 0
        self.unwritten: list[Message] = []
        self._committing: list[Message] = []
        self.seq = 0
        self.bytes_written = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-io")
        self._store = Store(directory, LANES)
        self._marks_saved: tuple[int, ...] = ()
        self._marks_at = 0.0
        self._wake = asyncio.Event()  # set when there may be something to commit
        self._recover()

    # -- intake --------------------------------------------------------------------------

    def put(
        self, topic: str, payload: bytes, qos: int = 1, lane: int = INFO, created: float = 0.0
    ) -> None:
        """``created``: when what the message says happened (an event's ``ts``); now if 0."""
        self.seq += 1
        msg = Message(topic, payload, qos, lane, self.seq, created or time.time())
        q = self.lanes[lane]
        if q.admit(msg.seq):
            q.queue.append(msg)
        self.unwritten.append(msg)
        self._wake.set()

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
        """The message to send next: critical first, then urgent, info, fresh telemetry."""
        for n in PRIORITY:
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

    def acked(self, mid: int) -> Message | None:
        """The broker acknowledged ``mid``: the message it was, if it was one of ours."""
        msg = self.inflight.pop(mid, None)
        if msg is not None:
            msg.acked = True
            self._wake.set()  # the watermarks moved: saved within MARKS_EVERY
        return msg

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
            "damaged_records": self.damaged_records,
        }
        for n, q in self.lanes.items():
            out[f"depth_{LANE_NAMES[n]}"] = len(q.queue) + q.spilled
            out[f"dropped_{LANE_NAMES[n]}"] = q.dropped
        return out

    # -- group commit --------------------------------------------------------------------

    async def run(self) -> None:
        """Commit ``window`` seconds after work arrives (one write for a burst), again while
        something is left to write, and once more when cancelled. An idle outbox sleeps: no
        wake-up while nothing is waiting."""
        try:
            while True:
                due = self._due()
                if due is None or due > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(due):
                            await self._wake.wait()
                self._wake.clear()
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
        # While writes fail, the watermarks are written (every 2 s, like any change) even when
        # unchanged: that is the probe that tells when the disk is back.
        save_marks = (final or time.monotonic() - self._marks_at >= MARKS_EVERY) and (
            marks != self._marks_saved or self.disk_error is not None
        )
        doomed = self._doomed()
        if not batch and not save_marks and not doomed:
            return
        batches: dict[int, list[Record]] = {}
        for m in batch:
            rec = Record(m.seq, m.created, m.lane, m.qos, m.topic, m.payload)
            batches.setdefault(m.lane, []).append(rec)
        saved = (list(marks[:-1]), marks[-1]) if save_marks else None
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._io, self._store.write, batches, doomed, saved)
        self._committing = []
        self.bytes_written += done.nbytes
        kept = [m for m in batch if m.lane not in done.lanes]
        for m in batch:
            m.written = m.lane in done.lanes
        self.unwritten = kept + self.unwritten  # kept in memory; tried again next window
        if save_marks:
            self._marks_at = time.monotonic()
        if done.marks:
            self._marks_saved = marks
        for n, (path, last, nbytes) in done.lanes.items():
            q = self.lanes[n]
            if q.segments and q.segments[-1].path == path:
                q.segments[-1].last_seq, q.segments[-1].nbytes = last, nbytes
            else:
                q.segments.append(Segment(path, last, nbytes))
        for q in self.lanes.values():
            q.segments = [s for s in q.segments if s.path not in done.deleted]
        if done.error is not None:
            self._cannot_write(str(done.error))
        elif self.disk_error is not None:
            log.info("outbox: writing to %s again", self.directory)
            self.disk_error = None
        self._enforce_budget(len(self.unwritten) if done.error else 0)

    def _marks(self) -> tuple[int, ...]:
        marks = []
        for n in LANES:  # by number: a watermark's place in the list is its lane's number
            q = self.lanes[n]
            firsts = [m.seq for m in self.inflight.values() if m.lane == n]
            if q.queue:
                firsts.append(q.queue[0].seq)
            if q.spilled:
                firsts.append(q.spill_from)
            q.watermark = max(q.watermark, (min(firsts) - 1) if firsts else self.seq)
            marks.append(q.watermark)
        return (*marks, self.seq)

    def _due(self) -> float | None:
        """Seconds until a commit has something to do (0: now); None while nothing waits."""
        if self.unwritten or self.disk_error is not None or self._doomed():
            return 0.0
        if self._marks() != self._marks_saved:
            return max(0.0, MARKS_EVERY - (time.monotonic() - self._marks_at))
        return None

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
            dropped = info.drop_segment(info.segments[0])  # the oldest info data first
            log.warning(
                "outbox over its %d-byte budget: dropped %d info messages", self.budget, dropped
            )
        while pending > info.memory and info.queue:  # disk failing: bound the memory too
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

    # -- reading back ----------------------------------------------------------------------

    def _refill(self, q: Lane) -> None:
        """Move the next part of a spilled run back into the queue. Spilled messages are one
        contiguous run of seqs: the older part on disk, the newer still in memory waiting for
        a commit. Reading segments blocks briefly, once per half a lane's memory."""
        want = q.memory // 2
        start = q.spill_from
        mem = [m for m in (*self._committing, *self.unwritten) if m.lane == q.n and m.seq >= start]
        below = mem[0].seq if mem else self.seq + 1  # disk holds the spilled seqs under this
        got: list[Message] = []
        for seg in q.segments:
            if seg.last_seq < start or len(got) >= want:
                continue
            for rec in read_records(seg.path, after=start - 1):
                if rec.seq < below and len(got) < want:
                    got.append(from_record(rec))
                    start = rec.seq + 1  # never the same seq twice
        if len(got) < want and len(got) < q.spilled - len(mem):
            # Every spilled seq on disk has been read and some did not come back: damaged
            # since they were written (or unreadable). Counted, so the depth stays true.
            lost = q.spilled - len(mem) - len(got)
            self._damaged(lost, self.directory)
            q.spilled -= lost
        got += mem[: max(0, want - len(got))]
        q.queue.extend(got)
        q.spilled = max(0, q.spilled - len(got))
        q.spill_from = got[-1].seq + 1 if q.spilled and got else (start if q.spilled else 0)

    def _damaged(self, n: int, path: str) -> None:
        self.damaged_records += n
        log.warning("outbox: %d damaged records or runs skipped in %s", n, path)
        try:
            self.on_damaged(n, path)
        except Exception:
            log.exception("outbox: the damage report failed")

    def _recover(self) -> None:
        """Read back what an earlier run left. Damaged records are skipped and counted; a
        segment is cut (a torn tail) only after its last record that verifies."""
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
        except OSError as exc:
            self._cannot_write(str(exc))
        else:
            if not os.access(self.directory, os.W_OK):  # a card gone read-only: known at once
                self._cannot_write(f"{self.directory}: not writable")
        saved = load_marks(self._store.marks_path, len(LANES))
        marks, self.seq = saved or ([0] * len(LANES), 0)
        recovered = 0
        for n in LANES:
            q = self.lanes[n]
            q.watermark = marks[n]
            adopt: int | None = None
            try:
                for seg in read_lane(self.directory, n, self._damaged):
                    adopt = None  # only the newest segment may be continued
                    top = seg.records[-1].seq if seg.records else 0
                    self.seq = max(self.seq, top, first_seq(seg.path) or 0)  # never reused
                    if not seg.readable:
                        continue  # left alone: it is not ours to delete what we cannot read
                    if not seg.records or seg.records[-1].seq <= q.watermark:
                        with contextlib.suppress(OSError):  # nothing in it left to send
                            os.unlink(seg.path)
                        continue
                    for rec in seg.records:
                        if rec.seq <= q.watermark:
                            continue
                        recovered += 1
                        if q.admit(rec.seq):
                            q.queue.append(from_record(rec))
                    q.segments.append(Segment(seg.path, seg.records[-1].seq, seg.size))
                    adopt = seg.adopt_at
            except OSError as exc:  # the directory cannot be listed
                self._cannot_write(str(exc))
            if adopt is not None:
                try:
                    self._store.writers[n].adopt(q.segments[-1].path, adopt)
                    q.segments[-1].nbytes = adopt
                except OSError as exc:
                    self._cannot_write(str(exc))
        damaged_marks = saved is None and os.path.lexists(self._store.marks_path)
        self._marks_saved = () if damaged_marks else self._marks()  # () rewrites it at once
        if recovered:
            log.info("outbox: %d messages waiting from before the restart", recovered)

    def _cannot_write(self, why: str) -> None:
        if self.disk_error is None:
            log.error("outbox cannot write: %s; holding messages in memory", why)
        self.disk_error = why

    def close(self) -> None:
        self._store.close()
        self._io.shutdown(wait=True)
