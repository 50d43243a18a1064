"""One EFM-4 electrical fire monitoring detector as its datasheet describes it
(shared/datasheets/electrical-fire-efm.md), written from the datasheet alone.

A Modbus slave for the EBC emulator's line (``firmware_stubs.ebc_pile.EbcEmulator`` carries
any slave with ``handle``/``advance``): so it shares the piles' RS-485 pty line, or serves
Modbus TCP, with the same timing. ``handle`` takes a request PDU and returns the reply PDU
(None for a broadcast). The clock is simulated (``advance``).

Behaviour modelled: the alarm delay (a value at or above its threshold that long), the latch
(state 1 and the status bit stay until the reset command), the shunt trip (coil 0: writing 1
trips and it reads 1 until a reset; writing 0 closes nothing), self-test (every channel in
alarm for 2 s), a broken sensor wire (state 2 or 3, the value register then reads 0), mains
loss, the event counter, and the exceptions (02 address, 03 value, 01 function).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from firmware_stubs.modbus_frames import exception_pdu, pack_bits

MODEL = 0x4546  # "EF"
FIRMWARE = 0x0103
RESIDUAL, TEMPERATURE = 1, 2
NORMAL, ALARM, OPEN, SHORT = 0, 1, 2, 3
SELF_TEST, RESET = 0xA5A5, 0x5A5A
RANGES = {RESIDUAL: (20, 1000), TEMPERATURE: (450, 1400)}
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


@dataclass
class Channel:
    kind: int  # 0 unused, 1 residual current (mA), 2 temperature (0.1 °C)
    value: float = 0.0  # mA, or °C
    state: int = NORMAL
    peak: float = 0.0
    held: float = 0.0  # seconds the value has been at or above the threshold

    def raw(self, v: float) -> int:
        if self.state in (OPEN, SHORT):
            return 0  # a broken wire: the register says nothing (reads 0)
        if self.kind == TEMPERATURE:
            return round(v * 10) & 0xFFFF
        return max(0, min(0xFFFF, round(v)))

    def scaled(self) -> float:
        """The value in the threshold's unit (mA, or 0.1 °C)."""
        return self.value * 10 if self.kind == TEMPERATURE else self.value


@dataclass
class Efm4:
    unit: int = 1
    channels: list[Channel] = field(
        default_factory=lambda: [Channel(RESIDUAL, 12.0), Channel(RESIDUAL, 8.0),
                                 Channel(TEMPERATURE, 25.0), Channel(TEMPERATURE, 26.0)]
    )  # fmt: skip
    thresholds: list[int] = field(default_factory=lambda: [300, 300, 800, 800])
    delay: int = 10
    self_trip: int = 0
    trip_output: bool = False
    mains_lost: bool = False
    counter: int = 0
    self_test_left: float = 0.0
    # Transport knobs the EBC emulator's line reads of every slave.
    silent: bool = False
    garble: bool = False
    ignore_broadcast: bool = False
    answer_as: int | None = None
    #: Every coil write (value), for tests: nothing may ever write 0.
    coil_writes: list[bool] = field(default_factory=list)
    trips: int = 0  # pulses of the shunt trip output

    # -- fault injection and the world ---------------------------------------------------------

    def set_value(self, channel: int, value: float) -> None:
        self.channels[channel - 1].value = value

    def break_wire(self, channel: int, short: bool = False) -> None:
        ch = self.channels[channel - 1]
        if ch.state not in (OPEN, SHORT):
            self._event()
        ch.state = SHORT if short else OPEN

    def mend_wire(self, channel: int) -> None:
        self.channels[channel - 1].state = NORMAL

    # -- the detector's own clock --------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        if self.self_test_left > 0:
            self.self_test_left = max(0.0, self.self_test_left - seconds)
        for i, ch in enumerate(self.channels):
            if ch.kind not in RANGES or ch.state in (OPEN, SHORT):
                continue
            ch.peak = max(ch.peak, ch.value)
            if ch.scaled() >= self.thresholds[i]:
                ch.held += seconds
                if ch.held >= self.delay and ch.state != ALARM:
                    ch.state = ALARM  # latched: stays until the reset command
                    self._event()
                    if self.self_trip:
                        self._trip()
            else:
                ch.held = 0.0

    def _event(self) -> None:
        self.counter = (self.counter + 1) & 0xFFFF

    def _trip(self) -> None:
        self.trips += 1
        if not self.trip_output:
            self._event()
        self.trip_output = True

    def _reset(self) -> None:
        for ch in self.channels:
            if ch.state == ALARM:
                ch.state = NORMAL
            ch.held = 0.0
            ch.peak = ch.value
        self.trip_output = False
        self._event()

    # -- registers -----------------------------------------------------------------------------

    def status(self) -> int:
        states = [self._state(ch) for ch in self.channels]
        bits = 0
        for ch, st in zip(self.channels, states, strict=True):
            if st == ALARM:
                bits |= 1 << (0 if ch.kind == RESIDUAL else 1)
            if st in (OPEN, SHORT):
                bits |= 1 << 2
        bits |= (self.trip_output << 3) | ((self.self_test_left > 0) << 4) | (self.mains_lost << 5)
        return bits

    def _state(self, ch: Channel) -> int:
        if self.self_test_left > 0 and ch.kind in RANGES:
            return ALARM
        return ch.state

    def inputs(self) -> list[int]:
        regs = [0] * 40
        regs[0:5] = [MODEL, FIRMWARE, 4, self.status(), self.counter]
        for i, ch in enumerate(self.channels):
            regs[8 + i] = ch.kind
            regs[16 + i] = ch.raw(ch.value)
            regs[24 + i] = self._state(ch)
            regs[32 + i] = ch.raw(ch.peak)
        return regs

    def holding(self) -> list[int]:
        return [*self.thresholds, self.delay, 0, self.self_trip]

    def write_holding(self, address: int, value: int) -> None:
        """Raises ``ValueError`` (exception 03) for a value out of range."""
        if address < 4:
            kind = self.channels[address].kind
            lo, hi = RANGES.get(kind, (0, 0xFFFF))
            if not lo <= value <= hi:
                raise ValueError
            self.thresholds[address] = value
        elif address == 4:
            if not 1 <= value <= 60:
                raise ValueError
            self.delay = value
        elif address == 5:
            if value == RESET:
                self._reset()
            elif value == SELF_TEST:
                self.self_test_left = 2.0
            else:
                raise ValueError
        elif value in (0, 1):
            self.self_trip = value
        else:
            raise ValueError

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes | None:
        fc = pdu[0]
        try:
            reply = self._handle(fc, pdu)
        except IndexError:
            reply = exception_pdu(fc, ILLEGAL_ADDRESS)
        except ValueError:
            reply = exception_pdu(fc, ILLEGAL_VALUE)
        return None if broadcast else reply

    def _handle(self, fc: int, pdu: bytes) -> bytes:
        if fc in (3, 4, 1):
            addr, count = struct.unpack(">HH", pdu[1:5])
            table: list[int] = self.inputs() if fc == 4 else self.holding()
            if fc == 1:
                if addr + count > 1 or count < 1:
                    raise IndexError
                data = pack_bits([self.trip_output])
                return bytes([fc, len(data)]) + data
            if count < 1 or addr + count > len(table):
                raise IndexError
            return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *table[addr : addr + count])
        if fc == 5:
            addr, value = struct.unpack(">HH", pdu[1:5])
            if addr != 0:
                raise IndexError
            if value not in (0x0000, 0xFF00):
                raise ValueError
            self.coil_writes.append(value == 0xFF00)
            if value == 0xFF00:
                self._trip()
            # Writing 0 does not close the breaker: only a person at the box can.
            return pdu[:5]
        if fc == 6:
            addr, value = struct.unpack(">HH", pdu[1:5])
            if addr > 6:
                raise IndexError
            self.write_holding(addr, value)
            return pdu[:5]
        if fc == 16:
            addr, count = struct.unpack(">HH", pdu[1:5])
            values = struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count])
            if addr + count > 7:
                raise IndexError
            for i, v in enumerate(values):
                self.write_holding(addr + i, v)
            return pdu[:5]
        return exception_pdu(fc, ILLEGAL_FUNCTION)
