"""Reference implementations for tests, written from the datasheets' words as plainly as
possible (bit by bit, no tables), so that neither the product nor an emulator can share a
mistake with them."""

from __future__ import annotations


def reference_crc(data: bytes) -> int:
    """CRC-16/MODBUS: poly 0xA001 reflected, init 0xFFFF (SRB-433 frames, Modbus RTU)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc
