"""Modbus framing for the emulators: CRC-16, RTU request splitting, MBAP headers.

Pure functions over bytes, no I/O. This is the emulator's side of the wire (the gateway talks
through pymodbus); keeping it separate lets the emulator's framing be tested on its own.
"""

from __future__ import annotations

import struct

from firmware_stubs.crc16 import crc16


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16(frame[:-2])


# Requests of these function codes have a fixed RTU length (address, fc, 4 bytes, crc).
_FIXED = {1, 2, 3, 4, 5, 6}


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the request frame at the start of ``buf``; None while more bytes are needed.
    Unknown function codes have no length rule: the whole buffer is the candidate frame."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in _FIXED:
        return 8 if len(buf) >= 8 else None
    if fc in (15, 16):
        if len(buf) < 7:
            return None
        n = 9 + buf[6]
        return n if len(buf) >= n else None
    return len(buf)


def split_rtu_requests(buf: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """Cut ``buf`` into (good frames, dropped garbage, remainder). A frame whose CRC fails is
    resynchronised one byte at a time, as a slave hunting for the next frame would."""
    frames: list[bytes] = []
    garbage: list[bytes] = []
    i = 0
    while i < len(buf):
        n = rtu_request_length(buf[i:])
        if n is None:
            break
        frame = buf[i : i + n]
        if rtu_ok(frame):
            frames.append(frame)
            i += n
        else:
            garbage.append(buf[i : i + 1])
            i += 1
    return frames, garbage, buf[i:]


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def parse_mbap(header: bytes) -> tuple[int, int, int, int]:
    """(transaction id, protocol id, bytes that follow the unit id, unit id)."""
    tid, pid, length, unit = struct.unpack(">HHHB", header)
    return tid, pid, length - 1, unit


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes([fc | 0x80, code])


def pack_bits(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


def char_seconds(baud: int, parity: str = "N") -> float:
    """One character on the wire: start + 8 data + optional parity + stop bit."""
    return (11 if parity in "EO" else 10) / baud


def t35(baud: int, parity: str = "N") -> float:
    """The 3.5-character silence that ends an RTU frame; fixed 1.75 ms above 19200 baud."""
    return 0.00175 if baud > 19200 else 3.5 * char_seconds(baud, parity)
