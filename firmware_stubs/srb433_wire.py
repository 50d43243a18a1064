"""The SRB-433 serial protocol as the emulator speaks it: frames, TYPE codes, detector models.

Written from the datasheet (shared/datasheets/smoke-rf-bridge.md, rev B) and on purpose never
from the driver's codec (STYLE §14): the emulator is the driver's independent peer, so a
misreading of the datasheet on either side shows up as a failing test instead of cancelling
out. Pure: bytes in, frames out; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from firmware_stubs.crc16 import crc16

SYNC = b"\xaa\x55"
LEN_MIN, LEN_MAX = 6, 64  # LEN counts TYPE (1) + DEVICE (4) + SEQ (1) + PAYLOAD

# Detector -> host
SMOKE, CLEARED, SELF_TEST, LOW_BATTERY, TAMPER, FAULT, HEARTBEAT, HUSHED, HEAT = range(1, 10)
# Receiver -> host (DEVICE 0)
STATUS, PAIRED = 0x70, 0x71
# Host -> receiver
PING, PAIR, HUSH_ALL, REMOVE, SOUND_ALL = 0x80, 0x81, 0x82, 0x83, 0x84

#: Receiver firmware from which it is rev B (knows SOUND ALL); below it is rev A.
REV_B_FIRMWARE = 0x0200


class FrameLike(Protocol):
    """Anything with a frame's four fields (the driver's own frames included, for tests)."""

    @property
    def type(self) -> int: ...
    @property
    def device(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, either direction; ``device`` 0 is the receiver itself."""

    type: int
    device: int
    seq: int
    payload: bytes = b""


def encode(frame: FrameLike) -> bytes:
    """sync, LEN, TYPE, DEVICE (u32 BE), SEQ, PAYLOAD, then CRC-16/MODBUS over LEN..PAYLOAD,
    low byte first."""
    body = (
        bytes((LEN_MIN + len(frame.payload), frame.type))
        + frame.device.to_bytes(4, "big")
        + bytes((frame.seq,))
        + bytes(frame.payload)
    )
    if body[0] > LEN_MAX:
        raise ValueError(f"LEN {body[0]} is over {LEN_MAX}")
    return SYNC + body + crc16(body).to_bytes(2, "little")


class FrameReader:
    """Frames out of a byte stream, as the datasheet tells a reader: find the sync word; a frame
    with LEN outside 6..64 or a bad CRC is dropped whole and the search goes on from the byte
    after the sync word it tried."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing 0xAA: it may be the first half of the next sync word.
                del buf[: len(buf) - 1 if buf.endswith(b"\xaa") else len(buf)]
                return out
            del buf[:start]
            if len(buf) < 3:
                return out
            length = buf[2]
            if not LEN_MIN <= length <= LEN_MAX:
                del buf[:2]
                continue
            end = 3 + length + 2
            if len(buf) < end:
                return out
            if crc16(bytes(buf[2 : 3 + length])) != int.from_bytes(buf[3 + length : end], "little"):
                del buf[:2]
                continue
            out.append(
                Frame(buf[3], int.from_bytes(buf[4:8], "big"), buf[8], bytes(buf[9 : 3 + length]))
            )
            del buf[:end]


@dataclass(frozen=True)
class DetectorModel:
    """A row of the datasheet's model table, and which TYPEs such a detector ever sends."""

    code: int
    name: str
    sends: frozenset[int]
    supervised: bool  # sends a heartbeat, so the host can tell a dead one from a quiet one


_SMOKE_ONLY = frozenset({SMOKE, CLEARED, SELF_TEST, LOW_BATTERY, TAMPER, FAULT, HEARTBEAT, HUSHED})

MODELS: dict[int, DetectorModel] = {
    0x01: DetectorModel(0x01, "SD-10", _SMOKE_ONLY, supervised=True),
    0x02: DetectorModel(0x02, "SHD-20", _SMOKE_ONLY | {HEAT}, supervised=True),
    # Legacy fixed-code radio: "sends only on alarm, test and low battery".
    0x11: DetectorModel(0x11, "SD-1L", frozenset({SMOKE, SELF_TEST, LOW_BATTERY}), False),
}
MODEL_CODES = {m.name: m.code for m in MODELS.values()}


def version(firmware: int) -> str:
    """The receiver's u16 firmware as people write it: 0x0102 is "1.2"."""
    return f"{firmware >> 8}.{firmware & 0xFF}"
