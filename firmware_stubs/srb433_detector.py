"""The smoke detectors behind the SRB-433 emulator's receiver: what each model transmits, when.

Each detector event goes out 3 times with one SEQ (the receiver's ``copies``), a smoke alarm
repeats with a new SEQ while smoke persists, and a detector of a model in the datasheet's
table sends only what that model sends. Written from the datasheet, never from the driver.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from firmware_stubs.srb433_wire import CLEARED, MODELS, DetectorModel, Frame

if TYPE_CHECKING:
    from firmware_stubs.srb433 import ReceiverEmulator


def parse_address(address: int | str) -> int:
    return int(address, 16) if isinstance(address, str) else address


class Detector:
    """One radio smoke detector. Every ``await``-ed event returns once all copies are sent.

    ``model`` is the datasheet's model code (0x01 SD-10, 0x02 SHD-20, 0x11 SD-1L); a detector
    of a listed model refuses to send what that model never sends (``ValueError``), so a test
    cannot prove the supervision of a detector that has no heartbeat.
    """

    def __init__(self, receiver: ReceiverEmulator, address: int, model: int = 1) -> None:
        self.receiver = receiver
        self.address = address
        self.model = model
        self.seq = random.randrange(256)
        self.smoke = False
        self._repeat: asyncio.Task[None] | None = None

    @property
    def kind(self) -> DetectorModel | None:
        """The model's datasheet row; None for a code the datasheet does not list."""
        return MODELS.get(self.model)

    @property
    def sounding(self) -> bool:
        """Its sounder is on because the receiver relayed a sound all (rev B)."""
        return self.receiver.sounding and self.address in self.receiver.paired

    def sends(self, type_: int) -> bool:
        kind = self.kind
        return kind is None or type_ in kind.sends

    async def transmit(self, type_: int, payload: bytes = b"") -> Frame:
        """A new event: next SEQ, sent ``copies`` times ``spacing`` seconds apart."""
        kind = self.kind
        if kind is not None and type_ not in kind.sends:
            raise ValueError(f"an {kind.name} never sends TYPE {type_:#04x} (datasheet)")
        self.seq = (self.seq + 1) & 0xFF
        frame = Frame(type_, self.address, self.seq, payload)
        rx = self.receiver
        for copy in range(rx.copies):
            if copy:
                await asyncio.sleep(rx.spacing)
            rx.radio(frame)
        return frame

    async def alarm(self, density: int = 120) -> Frame:
        """Smoke: alarm now, and again every ``alarm_repeat`` s with a new SEQ until cleared."""
        self.smoke = True
        frame = await self.transmit(0x01, bytes((density,)))
        if self._repeat is None or self._repeat.done():
            self._repeat = self.receiver.spawn(self._repeat_alarm(density), f"repeat:{self}")
        return frame

    async def _repeat_alarm(self, density: int) -> None:
        while self.smoke:
            await asyncio.sleep(self.receiver.alarm_repeat)
            if self.smoke:
                await self.transmit(0x01, bytes((density,)))

    async def clear(self) -> Frame | None:
        """Smoke gone: the alarm stops repeating. None from a model that never reports it (an
        SD-1L falls silent; the host cannot tell)."""
        self.smoke = False
        if self._repeat is not None:
            self._repeat.cancel()
        if not self.sends(CLEARED):
            return None
        return await self.transmit(CLEARED)

    async def test(self, passed: bool = True) -> Frame:
        return await self.transmit(0x03, bytes((0 if passed else 1,)))

    async def low_battery(self, battery_mv: int = 2600) -> Frame:
        return await self.transmit(0x04, battery_mv.to_bytes(2, "big"))

    async def tamper(self, removed: bool = True) -> Frame:
        return await self.transmit(0x05, bytes((int(removed),)))

    async def fault(self, code: int = 1) -> Frame:
        return await self.transmit(0x06, bytes((code,)))

    async def heartbeat(self, battery_mv: int = 3000, rssi_dbm: int = -60) -> Frame:
        return await self.transmit(
            0x07, battery_mv.to_bytes(2, "big") + rssi_dbm.to_bytes(1, "big", signed=True)
        )

    async def hush(self) -> Frame:
        return await self.transmit(0x08)

    async def heat(self, temperature_c: int = 65) -> Frame:
        return await self.transmit(0x09, bytes((temperature_c,)))

    def __str__(self) -> str:
        return f"{self.address:08X}"
