"""The outbox's disk side: the watermarks file, the group-commit write, reading records back.

Everything here blocks: the outbox runs it on its one I/O thread (recovery runs in its
constructor, before anything waits on it). Nothing here raises for what a file holds, or
for a file that cannot be read; a write reports what it managed and the error that stopped
it, and the outbox keeps the rest in memory and tries again at its next commit.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gatewayd.uplink.segments import (
    Record,
    SegmentWriter,
    list_segments,
    read_regular,
    read_segment,
)

log = logging.getLogger("gatewayd.uplink.outbox")

MARKS_FILE = "acked.json"
MAX_SEQ = (1 << 63) - 1


def _marks_crc(watermarks: list[int], seq: int) -> int:
    return zlib.crc32(json.dumps([watermarks, seq], separators=(",", ":")).encode())


def _is_seq(x: Any) -> bool:
    return type(x) is int and 0 <= x <= MAX_SEQ  # not a bool, not a float


def _parse_marks(raw: bytes) -> tuple[list[int], int] | None:
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        return None
    marks, seq = obj.get("watermarks"), obj.get("seq")
    if not (isinstance(marks, list) and _is_seq(seq) and all(_is_seq(m) for m in marks)):
        return None
    assert isinstance(seq, int)
    if any(m > seq for m in marks):  # never written so: a watermark can only trail the seq
        return None
    # Format 2 carries a checksum: one flipped digit would otherwise raise a watermark and
    # silently skip messages never acknowledged. Without "v" and "crc" it is the file of the
    # format-1 outbox, read once at the upgrade (one flipped bit cannot remove both keys).
    if ("crc" in obj or "v" in obj) and obj.get("crc") != _marks_crc(marks, seq):
        return None
    return [int(m) for m in marks], int(seq)


def load_marks(path: str, lanes: int) -> tuple[list[int], int] | None:
    """The saved watermarks (one per lane) and last seq; None when the file is missing or does
    not verify. Unknown fields are ignored. The caller then sends again everything on disk:
    duplicates, never a loss."""
    try:
        raw = read_regular(path, 1 << 16)  # the real file is under 100 bytes
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("outbox: cannot read %s (%s); sending everything on disk again", path, exc)
        return None
    try:
        got = _parse_marks(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly nested
        got = None
    if got is None:
        log.warning("outbox: %s is damaged; sending everything on disk again", path)
        return None
    marks, seq = got
    return [*marks[:lanes], *[0] * (lanes - len(marks))], seq


def save_marks(path: str, watermarks: list[int], seq: int) -> None:
    body = {"v": 2, "watermarks": watermarks, "seq": seq, "crc": _marks_crc(watermarks, seq)}
    tmp = path + ".tmp"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(slots=True)
class OnDisk:
    """One segment as recovery finds it."""

    path: str
    records: list[Record]  # verified, each seq above every earlier one of the lane
    size: int
    adopt_at: int | None  # where the writer may continue it: after its last verified record
    readable: bool = True


def read_lane(directory: str, lane: int, damaged: Callable[[int, str], None]) -> Iterator[OnDisk]:
    """A lane's segments, oldest first; damage and unreadable files are reported through
    ``damaged``. Raises OSError only if the directory cannot be listed."""
    last = 0  # seqs only rise within a lane; a lower one is a retried batch's second copy
    for path in list_segments(directory, lane):
        try:
            seg = read_segment(path, after=last)
        except OSError as exc:
            log.warning("outbox: cannot read %s: %s", path, exc)
            damaged(1, path)
            yield OnDisk(path, [], 0, None, readable=False)
            continue
        if seg.damaged:
            damaged(seg.damaged, path)
        mine = [r for r, _ in seg.records]
        last = mine[-1].seq if mine else last
        yield OnDisk(path, mine, seg.size, None if seg.legacy else seg.valid_end)


def read_records(path: str, after: int = 0) -> list[Record]:
    """A segment's verified records above seq ``after``, seqs rising; [] if the file cannot
    be read."""
    try:
        return [rec for rec, _end in read_segment(path, after).records]
    except OSError as exc:
        log.warning("outbox: cannot read %s: %s", path, exc)
        return []


@dataclass(slots=True)
class Written:
    """What one commit managed before an error, if any, stopped it."""

    lanes: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # path, last seq, size
    deleted: list[str] = field(default_factory=list)
    marks: bool = False
    nbytes: int = 0
    error: OSError | None = None


class Store:
    """The segment writers and the watermarks file of one outbox directory."""

    def __init__(self, directory: str, lanes: tuple[int, ...]) -> None:
        self.directory = directory
        self.writers = {n: SegmentWriter(directory, n) for n in lanes}
        self.marks_path = os.path.join(directory, MARKS_FILE)

    def write(
        self,
        batches: dict[int, list[Record]],
        doomed: list[str],
        marks: tuple[list[int], int] | None,
    ) -> Written:
        out = Written()
        # Deletions first: a wholly acknowledged segment a writer still holds is closed and
        # removed, and this batch starts a fresh one (doomed was decided before the batch). A
        # file that will not go is tried again next time; it does not hold up the batch.
        for path in doomed:
            for w in self.writers.values():
                if w.path == path:
                    w.close()
                    w.path = ""
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                out.error = out.error or exc
                continue
            out.deleted.append(path)
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)  # it may have been missing
            for n, records in batches.items():
                w = self.writers[n]
                before = w.path, w.size
                w.append(records)
                w.sync()
                out.nbytes += w.size - (before[1] if before[0] == w.path else 0)
                out.lanes[n] = (w.path, records[-1].seq, w.size)
            if marks is not None:
                save_marks(self.marks_path, *marks)
                out.marks = True
        except OSError as exc:
            out.error = exc
        return out

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
