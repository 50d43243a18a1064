"""The DL-B2 lock's GATT protocol as pure functions over bytes (datasheet: door-lock-ble.md).

Builds COMMAND writes (with their MAC), parses EVENTS notifications into typed records and
reads the manufacturer data of advertisements. No I/O, no clocks, no logging: everything here
can be fuzzed. A frame that does not parse raises ``FrameError`` (a ``ValueError``), never
anything else, so one bad notification cannot take a connection down.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

SERVICE_UUID: Final = "5a1e0000-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
CHALLENGE_UUID: Final = "5a1e0001-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
COMMAND_UUID: Final = "5a1e0002-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
EVENTS_UUID: Final = "5a1e0003-7c1a-4d2b-9e3f-a0b1c2d3e4f5"
COMPANY_ID: Final = 0xFFFF
NAME_PREFIX: Final = "DL-B2"  # the advertised local name: DL-B2-XXXX (the address's last digits)

KEY_LEN: Final = 16
CHALLENGE_LEN: Final = 16
MAC_LEN: Final = 16
COMMAND_LEN: Final = 21
MAX_UNLOCK_SECONDS: Final = 30


class Op(IntEnum):
    UNLOCK = 0x01
    LOCK = 0x02
    HOLD_OPEN = 0x03
    STATUS = 0x04


class EventType(IntEnum):
    ACK = 0x10
    UNLOCKED = 0x11
    LOCKED = 0x12
    DOOR_OPENED = 0x13
    DOOR_CLOSED = 0x14
    HELD_OPEN = 0x15
    FORCED = 0x16
    ACCESS_DENIED = 0x17
    ON_BATTERY = 0x18
    TAMPER = 0x19
    STATUS = 0x1A


# Names of the datasheet's enumerations, as they appear in events, states and error codes.
ACK_CODES: Final[Mapping[int, str]] = {
    0: "ok",
    1: "bad_mac",
    2: "stale_challenge",
    3: "busy",
    4: "jammed",
}
UNLOCK_METHODS: Final[Mapping[int, str]] = {
    1: "remote",
    2: "card",
    3: "pin",
    4: "fingerprint",
    5: "mechanical_key",
    6: "exit_button",
    7: "evacuation_release",
}
LOCK_METHODS: Final[Mapping[int, str]] = {1: "auto_relock", 2: "command", 3: "end_of_hold_open"}
LOCK_STATES: Final[Mapping[int, str]] = {0: "locked", 1: "unlocked", 2: "held_open"}
DOOR_STATES: Final[Mapping[int, str]] = {0: "closed", 1: "open"}


def name_of(table: Mapping[int, str], value: int) -> str:
    """A table's name for ``value``; newer firmware may send values this gateway predates."""
    return table.get(value, f"unknown_{value}")


class FrameError(ValueError):
    """A notification or advertisement that does not follow the datasheet."""


class TruncatedFrame(FrameError):
    """Shorter than its TYPE's layout."""


class UnknownEventType(FrameError):
    """A TYPE the datasheet does not define."""

    def __init__(self, type_: int) -> None:
        super().__init__(f"unknown event type 0x{type_:02x}")
        self.type = type_


# -- COMMAND ------------------------------------------------------------------------------


def command_mac(key: bytes, challenge: bytes, op: int, seq: int, arg: int) -> bytes:
    """First 16 bytes of HMAC-SHA256(key, challenge ‖ OP ‖ SEQ ‖ ARG)."""
    msg = challenge + struct.pack(">BHH", op, seq, arg)
    return hmac.new(key, msg, hashlib.sha256).digest()[:MAC_LEN]


def build_command(key: bytes, challenge: bytes, op: int, seq: int, arg: int = 0) -> bytes:
    """The 21-byte COMMAND write: OP, SEQ (u16 BE), ARG (u16 BE), MAC."""
    if len(key) != KEY_LEN:
        raise ValueError(f"device key must be {KEY_LEN} bytes")
    if len(challenge) != CHALLENGE_LEN:
        raise ValueError(f"challenge must be {CHALLENGE_LEN} bytes, got {len(challenge)}")
    if not 0 <= op <= 0xFF or not 0 <= seq <= 0xFFFF or not 0 <= arg <= 0xFFFF:
        raise ValueError("op, seq or arg out of range")
    return struct.pack(">BHH", op, seq, arg) + command_mac(key, challenge, op, seq, arg)


# -- EVENTS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """Fields every EVENTS frame has. ``seq`` is the command's SEQ for an ACK and the lock's
    own event counter otherwise."""

    seq: int


@dataclass(frozen=True, slots=True)
class Ack(Notification):
    result: int

    @property
    def code(self) -> str:
        return name_of(ACK_CODES, self.result)


@dataclass(frozen=True, slots=True)
class Unlocked(Notification):
    method: int
    user: int


@dataclass(frozen=True, slots=True)
class Locked(Notification):
    method: int


@dataclass(frozen=True, slots=True)
class DoorOpened(Notification):
    pass


@dataclass(frozen=True, slots=True)
class DoorClosed(Notification):
    pass


@dataclass(frozen=True, slots=True)
class HeldOpen(Notification):
    seconds: int


@dataclass(frozen=True, slots=True)
class Forced(Notification):
    pass


@dataclass(frozen=True, slots=True)
class AccessDenied(Notification):
    method: int
    user: int


@dataclass(frozen=True, slots=True)
class OnBattery(Notification):
    battery_mv: int


@dataclass(frozen=True, slots=True)
class Tamper(Notification):
    pass


@dataclass(frozen=True, slots=True)
class Status(Notification):
    lock: int
    door: int
    battery_mv: int


# TYPE -> (record class, payload layout after TYPE and SEQ)
_LAYOUTS: Final[Mapping[int, tuple[type[Notification], struct.Struct]]] = {
    EventType.ACK: (Ack, struct.Struct(">B")),
    EventType.UNLOCKED: (Unlocked, struct.Struct(">BI")),
    EventType.LOCKED: (Locked, struct.Struct(">B")),
    EventType.DOOR_OPENED: (DoorOpened, struct.Struct(">")),
    EventType.DOOR_CLOSED: (DoorClosed, struct.Struct(">")),
    EventType.HELD_OPEN: (HeldOpen, struct.Struct(">H")),
    EventType.FORCED: (Forced, struct.Struct(">")),
    EventType.ACCESS_DENIED: (AccessDenied, struct.Struct(">BI")),
    EventType.ON_BATTERY: (OnBattery, struct.Struct(">H")),
    EventType.TAMPER: (Tamper, struct.Struct(">")),
    EventType.STATUS: (Status, struct.Struct(">BBH")),
}
_HEAD = struct.Struct(">BH")


def parse_event(frame: bytes | bytearray) -> Notification:
    """One EVENTS notification as its record. Bytes past the TYPE's layout are ignored:
    later firmware may append fields, and the datasheet's fields keep their offsets."""
    if len(frame) < _HEAD.size:
        raise TruncatedFrame(f"event frame of {len(frame)} bytes, need at least {_HEAD.size}")
    type_, seq = _HEAD.unpack_from(frame)
    layout = _LAYOUTS.get(type_)
    if layout is None:
        raise UnknownEventType(type_)
    cls, payload = layout
    need = _HEAD.size + payload.size
    if len(frame) < need:
        raise TruncatedFrame(f"event 0x{type_:02x} of {len(frame)} bytes, its layout needs {need}")
    return cls(seq, *payload.unpack_from(frame, _HEAD.size))


def event_type_of(record: Notification) -> EventType:
    for type_, (cls, _) in _LAYOUTS.items():
        if type(record) is cls:
            return EventType(type_)
    raise TypeError(f"not a DL-B2 record: {record!r}")


def encode_event(record: Notification) -> bytes:
    """The frame for ``record``: the inverse of ``parse_event``, for tests and fuzzing."""
    type_ = event_type_of(record)
    _, payload = _LAYOUTS[type_]
    values = [getattr(record, f) for f in record.__dataclass_fields__ if f != "seq"]
    return _HEAD.pack(type_, record.seq) + payload.pack(*values)


# -- advertisements ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdvertState:
    """The lock's manufacturer data: what it says about itself without a connection."""

    lock: int
    door: int
    battery_pct: int
    counter: int


def parse_manufacturer_data(data: Mapping[int, bytes]) -> AdvertState | None:
    """The DL-B2 fields from an advertisement's manufacturer data; None without company
    0xFFFF (another vendor's data, or a scan response without it)."""
    raw = data.get(COMPANY_ID)
    if raw is None:
        return None
    if len(raw) < 4:
        raise TruncatedFrame(f"manufacturer data of {len(raw)} bytes, need 4")
    lock, door, battery, counter = raw[:4]
    return AdvertState(lock, door, battery, counter)


def counter_moved(before: int, after: int) -> int:
    """Events the lock counted between two sightings of its u8 counter (mod 256)."""
    return (after - before) & 0xFF
