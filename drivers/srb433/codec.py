"""The SRB-433 wire format: frames, CRC-16/MODBUS and an incremental decoder.

Pure: bytes in, frames out. No I/O, no clocks (the deduplicator is handed the time), no logging
on the hot path. Everything here must stay fuzzable and fast: the decoder is fed radio noise
and must never raise on any input, never yield a frame whose CRC is wrong, and keep at most one
torn frame buffered.
"""

from __future__ import annotations

from dataclasses import dataclass

SYNC = b"\xaa\x55"
LEN_MIN = 6  # TYPE + DEVICE + SEQ
LEN_MAX = 64
HEADER = 3  # sync word + LEN
MAX_FRAME = HEADER + LEN_MAX + 2
MAX_PAYLOAD = LEN_MAX - LEN_MIN


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF, no final xor)."""
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, either direction. ``device`` 0 is the receiver itself."""

    type: int
    device: int
    seq: int
    payload: bytes = b""


def encode(frame: Frame) -> bytes:
    """The frame's bytes on the wire, sync word and CRC included."""
    if not 0 <= frame.type <= 0xFF or not 0 <= frame.seq <= 0xFF:
        raise ValueError(f"type and seq are bytes: {frame!r}")
    if not 0 <= frame.device <= 0xFFFFFFFF:
        raise ValueError(f"device is a u32: {frame.device:#x}")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload is at most {MAX_PAYLOAD} bytes, got {len(frame.payload)}")
    body = (
        bytes((LEN_MIN + len(frame.payload), frame.type))
        + frame.device.to_bytes(4, "big")
        + bytes((frame.seq,))
        + frame.payload
    )
    return SYNC + body + crc16(body).to_bytes(2, "little")


class Decoder:
    """Incremental decoder: feed it whatever the port gave, get the complete frames back.

    Sync search uses ``bytes.find``; a frame with a bad CRC or LEN is dropped whole and the
    search carries on from the byte after its sync word (datasheet). The buffer never holds
    more than one torn frame (< ``MAX_FRAME`` bytes).

    A false sync word in noise can claim up to 64 bytes that never arrive. Rather than stall
    every later frame behind it until enough bytes trickle in, a torn candidate is given up as
    soon as a complete frame with a good CRC starts inside it: a CRC match is strong evidence
    (1 in 65536 by chance), an unfinished length byte is none.
    """

    __slots__ = ("_tail", "bad_crc", "bad_len", "frames", "skipped")

    def __init__(self) -> None:
        self._tail = b""
        self.frames = 0
        self.bad_crc = 0
        self.bad_len = 0
        self.skipped = 0  # torn candidates abandoned for a later good frame

    @property
    def buffered(self) -> int:
        return len(self._tail)

    def reset(self) -> None:
        """Forget a torn frame (after the port was reopened)."""
        self._tail = b""

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._tail + data if self._tail else bytes(data)
        out: list[Frame] = []
        find = buf.find
        table = _TABLE
        n = len(buf)
        pos = 0
        while True:
            i = find(SYNC, pos)
            if i < 0:
                # A lone trailing 0xAA may be the first half of the next sync word.
                self._tail = buf[-1:] if n and buf[-1] == 0xAA else b""
                break
            if i + HEADER > n:
                self._tail = buf[i:]
                break
            length = buf[i + 2]
            if length < LEN_MIN or length > LEN_MAX:
                self.bad_len += 1
                pos = i + 2
                continue
            end = i + HEADER + length + 2
            if end > n:
                j = self._complete_frame_after(buf, i)
                if j < 0:
                    self._tail = buf[i:]
                    break
                self.skipped += 1
                pos = j
                continue
            # Running the CRC over the frame's own CRC bytes leaves 0 when they match.
            crc = 0xFFFF
            for byte in buf[i + 2 : end]:
                crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
            if crc:
                self.bad_crc += 1
                pos = i + 2
                continue
            out.append(
                Frame(
                    buf[i + 3],
                    int.from_bytes(buf[i + 4 : i + 8], "big"),
                    buf[i + 8],
                    buf[i + 9 : end - 2],
                )
            )
            pos = end
        self.frames += len(out)
        return out

    @staticmethod
    def _complete_frame_after(buf: bytes, start: int) -> int:
        """Offset of the first complete, CRC-valid frame after ``start``, or -1."""
        n = len(buf)
        j = buf.find(SYNC, start + 2)
        while j >= 0 and j + HEADER + LEN_MIN + 2 <= n:
            length = buf[j + 2]
            end = j + HEADER + length + 2
            if LEN_MIN <= length <= LEN_MAX and end <= n and crc16(buf[j + 2 : end]) == 0:
                return j
            j = buf.find(SYNC, j + 2)
        return -1


class Deduplicator:
    """Drops the radio's repeats: each event goes out 3 times with the same (DEVICE, TYPE, SEQ).

    A key seen within ``window`` seconds is a repeat. The caller passes a monotonic time, so
    tests need no clock. Memory is bounded by what arrives within one window.
    """

    __slots__ = ("_seen", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._seen: dict[tuple[int, int, int], float] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, frame: Frame, now: float) -> bool:
        """True the first time a frame is heard within the window, False for its repeats."""
        seen = self._seen
        # Insertion order is arrival order, so expired keys are always at the front.
        horizon = now - self.window
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > horizon:
                break
            del seen[oldest]
        key = (frame.device, frame.type, frame.seq)
        if key in seen:
            return False
        seen[key] = now
        return True
