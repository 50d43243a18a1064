"""On-disk format of the outbox: append-only segment files of checksummed records.

A record is written once and never rewritten; a segment is deleted whole when every record in
it has been acknowledged (or dropped under the disk budget). A crash can leave a torn record at
the end of the newest segment: ``scan`` stops at the first bad checksum and the writer truncates
there. No event-loop code here: these functions block and run in the executor.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = struct.Struct("<IIQdBBH")  # length, crc32, seq, created, lane, qos, topic length
SEGMENT_BYTES = 1 << 20  # rotate at 1 MiB: small enough to free space soon after a drain


@dataclass(slots=True)
class Record:
    seq: int
    created: float
    lane: int
    qos: int
    topic: str
    payload: bytes

    @property
    def size(self) -> int:
        return HEADER.size + len(self.topic.encode()) + len(self.payload)


def encode(r: Record) -> bytes:
    topic = r.topic.encode()
    body = topic + r.payload
    crc = zlib.crc32(struct.pack("<QdBBH", r.seq, r.created, r.lane, r.qos, len(topic)) + body)
    return HEADER.pack(len(body), crc, r.seq, r.created, r.lane, r.qos, len(topic)) + body


def scan(path: str) -> Iterator[tuple[Record, int]]:
    """Records of one segment with the offset just past each; stops at a torn tail."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + HEADER.size <= len(data):
        length, crc, seq, created, lane, qos, tlen = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if end > len(data) or tlen > length:
            return
        body = data[pos + HEADER.size : end]
        if zlib.crc32(struct.pack("<QdBBH", seq, created, lane, qos, tlen) + body) != crc:
            return
        yield (
            Record(seq, created, lane, qos, body[:tlen].decode(errors="replace"), body[tlen:]),
            end,
        )
        pos = end


def segment_name(lane: int, first_seq: int) -> str:
    return f"lane{lane}-{first_seq:016d}.seg"


def list_segments(directory: str, lane: int) -> list[str]:
    prefix = f"lane{lane}-"
    return sorted(
        os.path.join(directory, n)
        for n in os.listdir(directory)
        if n.startswith(prefix) and n.endswith(".seg")
    )


class SegmentWriter:
    """Appends to one lane's newest segment; rotates by size. Used from one thread only."""

    def __init__(self, directory: str, lane: int) -> None:
        self.directory = directory
        self.lane = lane
        self.fd = -1
        self.path = ""
        self.size = 0

    def append(self, records: list[Record]) -> None:
        if not records:
            return
        if self.fd < 0 or self.size >= SEGMENT_BYTES:  # none open yet, full, or just removed
            self._rotate(records[0].seq)
        data = b"".join(encode(r) for r in records)
        os.write(self.fd, data)
        self.size += len(data)

    def sync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def adopt(self, path: str, valid_end: int) -> None:
        """Continue an existing segment after a restart, cutting off a torn tail."""
        self.close()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.ftruncate(self.fd, valid_end)
        self.path, self.size = path, valid_end

    def _rotate(self, first_seq: int) -> None:
        self.close()
        self.path = os.path.join(self.directory, segment_name(self.lane, first_seq))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = 0
        dfd = os.open(self.directory, os.O_RDONLY)  # the new name must survive a power cut too
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
