"""On-disk format of the outbox: append-only segment files of self-checking records.

A record is written once and never rewritten; a segment is deleted whole when every record in
it has been acknowledged (or dropped under the disk budget). Each record starts with a marker
and carries one checksum over its header and one over its body (docs/outbox.md has the
layout). A reader that meets bytes that do not verify (a flipped bit, a zeroed or garbled run,
a torn tail after a power cut) counts them, searches forward for the next record that
verifies, and keeps everything after it: damage costs the damaged records, never the rest.

Segments written before this format (format 1: no marker, one checksum) are still read, so a
gateway updated in the field keeps its backlog; the format is told apart per file, and nothing
is ever appended to a format-1 file. No event-loop code here: these functions block and run
in the executor (or, for a read-back, briefly on the loop; see outbox._refill).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = b"\xffOB2"  # 0xFF never occurs in UTF-8, so never in a JSON payload
# After the marker and the header checksum: body length, body crc32, seq, created, lane, qos,
# topic length. Format 1 had the same fields, its crc covering them and the body together.
FIELDS = struct.Struct("<IIQdBBH")
HEAD = struct.Struct("<4sI")  # marker, crc32 of the FIELDS bytes
HEADER = struct.Struct("<4sIIIQdBBH")  # HEAD then FIELDS
HEADER_BYTES = HEADER.size  # 36
SEGMENT_BYTES = 1 << 20  # rotate at 1 MiB: small enough to free space soon after a drain
READ_LIMIT = 256 << 20  # a segment is SEGMENT_BYTES and one batch: a bigger file is not ours
# Format 1 has no marker: a resync tries offsets whose lane and qos bytes (at +24, +25) could
# be a header's, and keeps the first whose checksum verifies.
_V1_CANDIDATE = re.compile(rb"(?=[\x00\x01][\x00-\x02])")


@dataclass(slots=True)
class Record:
    seq: int
    created: float
    lane: int
    qos: int
    topic: str
    payload: bytes


@dataclass(slots=True)
class SegmentScan:
    """What one segment file holds: its verified records with the offset just past each (only
    those whose seq rises above every one before it and above the ``after`` it was read with:
    a lower one is a retried batch's second copy, or not wanted), how many damaged records or
    runs of unverifiable bytes were skipped, and where the last verified record ends (the
    writer may append only there)."""

    records: list[tuple[Record, int]] = field(default_factory=list)
    damaged: int = 0
    valid_end: int = 0
    size: int = 0
    legacy: bool = False  # format 1: read, never appended to


def encode(r: Record) -> bytes:
    topic = r.topic.encode()
    body = topic + r.payload
    fields = FIELDS.pack(len(body), zlib.crc32(body), r.seq, r.created, r.lane, r.qos, len(topic))
    return b"".join((HEAD.pack(MAGIC, zlib.crc32(fields)), fields, body))


def _scan_v2(data: bytes, last: int) -> SegmentScan:
    out = SegmentScan()
    records, size, view, crc = out.records, len(data), memoryview(data), zlib.crc32
    pos, in_run = 0, False
    while 0 <= pos < size:  # one pass per record: this loop is most of a start-up's time
        if pos + HEADER_BYTES <= size:
            magic, hcrc, length, bcrc, seq, created, lane, qos, tlen = HEADER.unpack_from(data, pos)
            start = pos + HEADER_BYTES
            end = start + length
            if magic == MAGIC and crc(view[pos + HEAD.size : start]) == hcrc and end <= size:
                if tlen <= length and crc(view[start:end]) == bcrc:
                    if seq > last:
                        topic = str(data[start : start + tlen], "utf-8", "replace")
                        rec = Record(seq, created, lane, qos, topic, data[start + tlen : end])
                        records.append((rec, end))
                        last = seq
                    pos = out.valid_end = end
                else:  # the header verifies, so its length can be trusted: skip exactly it
                    out.damaged += 1
                    pos = end
                in_run = False
                continue
        # No intact record starts here (or its body runs past the end: a torn tail): one
        # damaged run, up to the next marker.
        out.damaged += 0 if in_run else 1
        pos, in_run = data.find(MAGIC, pos + 1), True
    return out


def _at_v1(data: bytes, pos: int) -> tuple[int, Record | None]:
    if pos < 0 or pos + FIELDS.size > len(data):
        return -1, None
    length, crc, seq, created, lane, qos, tlen = FIELDS.unpack_from(data, pos)
    end = pos + FIELDS.size + length
    if end > len(data) or tlen > length:
        return -1, None
    body = data[pos + FIELDS.size : end]
    if zlib.crc32(data[pos + 8 : pos + FIELDS.size] + body) != crc:
        return -1, None
    return end, Record(seq, created, lane, qos, body[:tlen].decode(errors="replace"), body[tlen:])


def _next_v1(data: bytes, pos: int) -> int:
    for m in _V1_CANDIDATE.finditer(data, pos + 24):
        if _at_v1(data, m.start() - 24)[1] is not None:
            return m.start() - 24
    return -1


def _scan_v1(data: bytes, last: int) -> SegmentScan:
    out = SegmentScan(legacy=True)
    pos, in_run = 0, False
    while 0 <= pos < len(data):
        end, rec = _at_v1(data, pos)
        if rec is not None:
            if rec.seq > last:
                out.records.append((rec, end))
                last = rec.seq
            pos, out.valid_end, in_run = end, end, False
        else:
            out.damaged += 0 if in_run else 1
            pos, in_run = _next_v1(data, pos + 1), True
    return out


def parse(data: bytes, after: int = 0) -> SegmentScan:
    """Read one segment's bytes, telling the format from the content (a damaged first record
    must not make a format-2 file look like format 1, or the reverse)."""
    if not data:
        # The writer never leaves an empty segment (a failed first write removes the file), so
        # one here lost what it held: to the card, or to a crash between create and write.
        return SegmentScan(damaged=1)
    v2 = _scan_v2(data, after)
    if v2.valid_end or data.startswith(MAGIC):
        return v2
    v1 = _scan_v1(data, after)
    return v1 if v1.valid_end else v2


def read_regular(path: str, limit: int) -> bytes:
    """A regular file's bytes. Anything else raises OSError: a FIFO must not block start-up,
    nor a device or a giant file fill the memory."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"over {limit} bytes", path)
        return f.read(limit)


def read_segment(path: str, after: int = 0) -> SegmentScan:
    """Raises OSError if the file cannot be read at all."""
    data = read_regular(path, READ_LIMIT)
    out = parse(data, after)
    out.size = len(data)
    return out


def scan(path: str) -> Iterator[tuple[Record, int]]:
    """The verified records of one segment, in file order; damage is skipped."""
    yield from read_segment(path).records


def segment_name(lane: int, first_seq: int) -> str:
    return f"lane{lane}-{first_seq:016d}.seg"


def first_seq(path: str) -> int | None:
    """The seq a segment's name says it starts at; None for a name the writer never makes."""
    name = os.path.basename(path)
    _, _, rest = name.partition("-")
    digits = rest.removesuffix(".seg")
    ok = name.startswith("lane") and name.endswith(".seg") and digits.isdigit() and digits.isascii()
    return int(digits) if ok else None


def list_segments(directory: str, lane: int) -> list[str]:
    """One lane's segment files, oldest first. Raises OSError if the directory cannot be listed."""
    prefix = f"lane{lane}-"
    paths = [
        os.path.join(directory, n)
        for n in os.listdir(directory)
        if n.startswith(prefix) and first_seq(n) is not None
    ]
    return sorted(paths, key=lambda p: first_seq(p) or 0)


class SegmentWriter:
    """Appends to one lane's newest segment; rotates by size. Used from one thread only."""

    def __init__(self, directory: str, lane: int) -> None:
        self.directory = directory
        self.lane = lane
        self.fd = -1
        self.path = ""
        self.size = 0

    def append(self, records: list[Record]) -> None:
        """All of ``records`` or, on an OSError, none of them: a failed write is cut back off
        (or its file abandoned), so a retry never leaves a torn record between good ones."""
        if not records:
            return
        if self.fd < 0 or self.size >= SEGMENT_BYTES:  # none open yet, full, or just removed
            self._rotate(records[0].seq)
        data = memoryview(b"".join(encode(r) for r in records))
        total = len(data)
        try:
            while data:
                data = data[os.write(self.fd, data) :]  # a full disk may take only a part
        except OSError:
            self._undo()
            raise
        self.size += total

    def _undo(self) -> None:
        try:
            if self.size == 0:  # a segment this batch created: leave no empty file behind
                os.unlink(self.path)
                self.close()
            else:
                os.ftruncate(self.fd, self.size)
        except OSError:
            self.close()  # the next batch starts another segment; the torn bytes read as damage
        if self.fd < 0:
            self.path = ""

    def sync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def adopt(self, path: str, valid_end: int) -> None:
        """Continue an existing format-2 segment after a restart, cutting off what follows its
        last verified record (a torn tail). Raises OSError if the file cannot be written."""
        self.close()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.ftruncate(fd, valid_end)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.path, self.size = fd, path, valid_end

    def _rotate(self, first: int) -> None:
        self.close()
        self.path = ""
        path = os.path.join(self.directory, segment_name(self.lane, first))
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.path = path
        self.size = os.lseek(self.fd, 0, os.SEEK_END)  # 0, unless a failed batch's retry
        dfd = os.open(self.directory, os.O_RDONLY)  # the new name must survive a power cut too
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
