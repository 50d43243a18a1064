"""CRC-16/MODBUS for the emulators (reflected poly 0xA001, init 0xFFFF, no final xor; sent low
byte first). The SRB-433 frame and Modbus RTU both use it.

Written here from the datasheets, never imported from the product: an emulator that shares
the product's checksum cannot catch a mistake in it (STYLE §14).
"""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` as an int; on the wire as ``crc16(data).to_bytes(2, "little")``."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc
