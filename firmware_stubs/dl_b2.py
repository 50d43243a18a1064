"""Emulator of the DL-B2 entrance lock controller (datasheet: door-lock-ble.md), served over
the fake BlueZ so the real bleak backend and the real driver can talk to it.

The protocol is implemented here from the datasheet, on purpose *without* importing the
driver's codec: a misreading of the datasheet in one place then shows up as a failing test
instead of cancelling out. Physical happenings (cards, the door, mains, tamper) and faults
(out of range, refused connections, links dropped mid-command, a jammed bolt) are methods a
test or a demo script calls on the emulator's event loop.

Run alone (starts its own private bus):
    python -m firmware_stubs.dl_b2 --address C0:FF:EE:00:00:01 --key-hex 00112233...
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_stubs.peripheral import (
    ERR_NOT_SUPPORTED,
    Advert,
    CharSpec,
    GattError,
    Peripheral,
    ServiceSpec,
)

log = logging.getLogger(__name__)

SERVICE = "5a1e0000-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
CHALLENGE = "5a1e0001-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
COMMAND = "5a1e0002-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
EVENTS = "5a1e0003-7c1a-4d2b-9e3f-a0b1c2d3e4f5"

# EVENTS TYPE codes, ACK results, lock/door states and methods, from the datasheet's tables.
ACK, UNLOCKED, LOCKED, OPENED, CLOSED, HELD_OPEN, FORCED, DENIED, ON_BATTERY, TAMPER, STATUS = (
    range(0x10, 0x1B)
)
OK, BAD_MAC, STALE, BUSY, JAMMED = range(5)
S_LOCKED, S_UNLOCKED, S_HELD_OPEN = range(3)
M_REMOTE, M_CARD, M_PIN, M_FINGERPRINT, M_KEY, M_EXIT, M_EVACUATION = range(1, 8)
L_AUTO, L_COMMAND, L_END_HOLD = 1, 2, 3
FAULTS = ("drop_on_write", "drop_before_ack", "no_ack", "busy")


@dataclass(frozen=True)
class CommandRecord:
    """One COMMAND write the lock received, and what it answered."""

    ts: float  # time.time() when the write arrived
    mono: float  # time.monotonic(), for latency measurements
    op: int
    seq: int
    arg: int
    result: int  # the ACK result the lock decided on
    acked: bool  # False when a fault swallowed the ACK


class DLB2(Peripheral):
    """One DL-B2 controller: its GATT server, its bolt, its door contact and its radio."""

    def __init__(
        self,
        address: str,
        key: bytes,
        *,
        battery_pct: int = 100,
        battery_mv: int = 13400,
        idle_timeout: float = 120.0,
        challenge_ttl: float = 30.0,
        held_open_after: float = 60.0,
        rssi: int = -62,
        challenge_source: Callable[[], bytes] | None = None,
    ) -> None:
        if len(key) != 16:
            raise ValueError("the DL-B2 device key is 16 bytes")
        self.address = address.upper()
        self.services = (
            ServiceSpec(
                SERVICE,
                (
                    CharSpec(CHALLENGE, ("read",)),
                    CharSpec(COMMAND, ("write",)),
                    CharSpec(EVENTS, ("notify",)),
                ),
            ),
        )
        self.key = key
        self.battery_pct = battery_pct
        self.battery_mv = battery_mv
        self.idle_timeout = idle_timeout
        self.challenge_ttl = challenge_ttl
        self.held_open_after = held_open_after
        self.rssi = rssi
        # Fresh random bytes, as the datasheet says; a recorder passes its own to get the
        # same transcript every time.
        self.challenge_source = challenge_source or (lambda: os.urandom(16))
        self.lock_state = S_LOCKED
        self.door = 0
        self.mains = True
        self.counter = 0  # u16 event counter; advertised as its low byte
        self.in_range = True
        self.refuse_connections = False
        self.jammed = False
        self.faults: list[tuple[str, int | None]] = []  # one-shot (fault, only for OP)
        self._then: list[tuple[int, Callable[[], None]]] = []  # one-shot (OP, happening)
        self.commands: list[CommandRecord] = []
        self.sent: list[bytes] = []  # every EVENTS frame the lock produced (sent or not)
        self.connections = 0
        self.challenges = 0  # challenges read
        self._challenge: bytes | None = None
        self._challenge_at = 0.0
        self._relock: asyncio.TimerHandle | None = None
        self._held: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None

    # -- radio ----------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return hasattr(self, "link") and self.link.connected

    def advertisement(self) -> Advert | None:
        # The DL-B2 serves one central at a time and stops advertising while connected.
        if not self.in_range or self.is_connected:
            return None
        mfr = bytes([self.lock_state, self.door, self.battery_pct, self.counter & 0xFF])
        return Advert(
            f"DL-B2-{self.address.replace(':', '')[-4:]}", [SERVICE], {0xFFFF: mfr}, self.rssi
        )

    def accept_connection(self) -> None:
        if not self.in_range:
            raise GattError("Page Timeout")
        if self.refuse_connections:
            raise GattError("Software caused connection abort")

    def connected(self) -> None:
        self.connections += 1
        self._touch()

    def disconnected(self) -> None:
        self._challenge = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _touch(self) -> None:
        """Any request from the central restarts the idle timer."""
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.idle_timeout, self.link.drop, "idle timeout")

    # -- GATT -----------------------------------------------------------------------------

    async def read(self, uuid: str) -> bytes:
        self._touch()
        if uuid != CHALLENGE:
            raise GattError("Read not permitted", "org.bluez.Error.NotPermitted")
        self._challenge = self.challenge_source()
        self._challenge_at = time.monotonic()
        self.challenges += 1
        return self._challenge

    async def write(self, uuid: str, data: bytes, with_response: bool) -> None:
        self._touch()
        if uuid != COMMAND:
            raise GattError("Write not permitted", "org.bluez.Error.NotPermitted")
        if len(data) != 21:
            raise GattError("Invalid Length", "org.bluez.Error.InvalidArguments")
        op, seq, arg = struct.unpack_from(">BHH", data)
        if op not in (1, 2, 3, 4):
            raise GattError("Request not supported", ERR_NOT_SUPPORTED)
        fault = self._take_fault(op)
        now, mono = time.time(), time.monotonic()
        if fault == "drop_on_write":
            self.commands.append(CommandRecord(now, mono, op, seq, arg, -1, acked=False))
            self.link.drop("link lost during write")
            await asyncio.sleep(3600)  # cancelled by the drop: the write fails
        result = self._check(data, op, seq, arg)
        if result == OK and fault == "busy":
            result = BUSY
        if result == OK and self.jammed and op != 4:
            result = JAMMED
        acked = fault not in ("drop_before_ack", "no_ack")
        self.commands.append(CommandRecord(now, mono, op, seq, arg, result, acked))
        # The write response goes out first, then the lock acts and notifies.
        asyncio.get_running_loop().call_soon(self._answer, op, seq, arg, result, fault)

    def _check(self, data: bytes, op: int, seq: int, arg: int) -> int:
        challenge, self._challenge = self._challenge, None  # good for one command, used or not
        if challenge is None or time.monotonic() - self._challenge_at > self.challenge_ttl:
            return STALE
        mac = hmac.new(self.key, challenge + data[:5], hashlib.sha256).digest()[:16]
        return OK if hmac.compare_digest(mac, data[5:21]) else BAD_MAC

    def _answer(self, op: int, seq: int, arg: int, result: int, fault: str | None) -> None:
        if result == OK:
            if op == 1:
                self._unlock(M_REMOTE, 0, arg or 5)
            elif op == 2:
                self._lock(L_END_HOLD if self.lock_state == S_HELD_OPEN else L_COMMAND)
            elif op == 3:
                self._hold_open()
        if fault == "drop_before_ack":
            self.link.drop("link lost before ACK")
            return
        if fault != "no_ack":
            self._notify(struct.pack(">BHB", ACK, seq, result))
        if result == OK and op == 4:
            self._event(STATUS, struct.pack(">BBH", self.lock_state, self.door, self.battery_mv))
        if result == OK:
            for i, (when, happening) in enumerate(self._then):
                if when == op:
                    del self._then[i]
                    happening()
                    break

    # -- the lock itself ------------------------------------------------------------------

    def _notify(self, frame: bytes) -> None:
        self.sent.append(frame)
        if self.is_connected:
            self.link.notify(EVENTS, frame)

    def _event(self, type_: int, payload: bytes = b"") -> None:
        self.counter = (self.counter + 1) & 0xFFFF
        self._notify(struct.pack(">BH", type_, self.counter) + payload)

    def _unlock(self, method: int, user: int, seconds: int) -> None:
        if self._relock is not None:
            self._relock.cancel()
            self._relock = None
        if self.lock_state != S_HELD_OPEN:
            self.lock_state = S_UNLOCKED
            loop = asyncio.get_running_loop()
            self._relock = loop.call_later(min(seconds, 30), self._lock, L_AUTO)
        self._event(UNLOCKED, struct.pack(">BI", method, user))

    def _lock(self, method: int) -> None:
        if self._relock is not None:
            self._relock.cancel()
            self._relock = None
        self.lock_state = S_LOCKED
        self._event(LOCKED, struct.pack(">B", method))

    def _hold_open(self) -> None:
        if self._relock is not None:
            self._relock.cancel()
            self._relock = None
        self.lock_state = S_HELD_OPEN
        self._event(UNLOCKED, struct.pack(">BI", M_EVACUATION, 0))

    # -- physical actions (call on the emulator's loop) -----------------------------------

    def credential(self, method: int, user: int, valid: bool = True) -> None:
        """A card (2), PIN (3) or fingerprint (4) presented by ``user``."""
        if valid and not self.jammed:
            self._unlock(method, user, 5)
        else:
            self._event(DENIED, struct.pack(">BI", method, user))

    def card(self, user: int, valid: bool = True) -> None:
        self.credential(M_CARD, user, valid)

    def exit_button(self) -> None:
        self._unlock(M_EXIT, 0, 5)

    def mechanical_key(self) -> None:
        self._unlock(M_KEY, 0, 5)

    def open_door(self) -> None:
        """The door contact opens; while locked that is a forced door."""
        if self.door:
            return
        self.door = 1
        self._event(OPENED)
        if self.lock_state == S_LOCKED:
            self._event(FORCED)
        opened = time.monotonic()
        loop = asyncio.get_running_loop()
        self._held = loop.call_later(self.held_open_after, self._held_too_long, opened)

    def _held_too_long(self, opened: float) -> None:
        self._event(HELD_OPEN, struct.pack(">H", min(int(time.monotonic() - opened), 0xFFFF)))

    def close_door(self) -> None:
        if not self.door:
            return
        self.door = 0
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._event(CLOSED)

    def mains_lost(self, battery_mv: int | None = None) -> None:
        self.mains = False
        if battery_mv is not None:
            self.battery_mv = battery_mv
        self._event(ON_BATTERY, struct.pack(">H", self.battery_mv))

    def mains_restored(self) -> None:
        self.mains = True

    def tamper(self) -> None:
        self._event(TAMPER)

    # -- faults ---------------------------------------------------------------------------

    def send_raw(self, frame: bytes) -> None:
        """Notify arbitrary bytes on EVENTS, as buggy or newer firmware might."""
        self._notify(frame)

    def out_of_range(self) -> None:
        """Gone from the air: the link drops and advertising stops."""
        self.in_range = False
        if self.is_connected:
            self.link.drop("out of range")

    def back_in_range(self) -> None:
        self.in_range = True
        self.link.advertise_now()

    def drop_link(self) -> None:
        if self.is_connected:
            self.link.drop("dropped by the emulator")

    def inject(self, *faults: str, op: int | None = None) -> None:
        """One-shot faults for the next commands (see ``FAULTS``), or for the next commands
        with OP ``op`` only (a gateway's own STATUS requests then pass unharmed)."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        self.faults.extend((fault, op) for fault in faults)

    def then(self, op: int, happening: Callable[[], None]) -> None:
        """Script the world: ``happening`` (an exit button, a card) takes place right after
        the lock has carried out and acknowledged the next command with OP ``op``."""
        self._then.append((op, happening))

    def _take_fault(self, op: int) -> str | None:
        for i, (fault, only) in enumerate(self.faults):
            if only is None or only == op:
                del self.faults[i]
                return fault
        return None

    def cancel_timers(self) -> None:
        """Forget pending relock, held-open and idle timers (emulator shutdown)."""
        for handle in (self._relock, self._held, self._idle):
            if handle is not None:
                handle.cancel()
        self._relock = self._held = self._idle = None

    def accepted(self) -> list[CommandRecord]:
        """Commands the lock acted on (a valid MAC, a fresh challenge, not jammed)."""
        return [c for c in self.commands if c.result == OK]


if __name__ == "__main__":  # pragma: no cover - exercised by hand and by the docs
    from firmware_stubs.dl_b2_cli import main

    main()
