"""What SRB-433 detector frames mean: TYPE codes, payload layouts, severities, state; and what
each detector model is (its heartbeat) and which receiver firmware knows SOUND ALL.

Device knowledge as data: ``KINDS`` is the datasheet's detector table in one place, ``MODELS``
its model table, and the functions here only interpret them. Pure: no I/O, no clock (the caller passes the time).
Receiver frames (DEVICE 0) are the transport's business and are not described here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.srb433 import events as ev
from drivers.srb433.codec import Frame
from gatewayd.errors import DeviceError
from gatewayd.model import Event, Severity

FAULTS: Mapping[int, str] = {1: "chamber_dirty", 2: "sensor_failure", 3: "end_of_life"}

#: Receiver firmware from which it is rev B and knows SOUND ALL (0x84); below it, rev A.
REV_B_FIRMWARE = 0x0200


@dataclass(frozen=True)
class DetectorModel:
    """A row of the datasheet's model table (the code of a pairing frame, printed on the label)."""

    code: int
    name: str
    #: Seconds between its heartbeats; None: it sends none, so the host cannot tell a dead one
    #: from a quiet one (and its fixed radio code can be recorded and replayed).
    heartbeat_seconds: float | None


MODELS: Mapping[int, DetectorModel] = {
    0x01: DetectorModel(0x01, "SD-10", 3600.0),
    0x02: DetectorModel(0x02, "SHD-20", 3600.0),
    0x11: DetectorModel(0x11, "SD-1L", None),
}
BY_NAME: Mapping[str, DetectorModel] = {m.name: m for m in MODELS.values()}
#: A detector whose model is not configured is supervised as the keep-alive models are.
DEFAULT_HEARTBEAT_SECONDS = ev.DEFAULT_HEARTBEAT_SECONDS


def detector_model(value: object) -> DetectorModel:
    """The model a config value names: its name (any case) or its code; ValueError otherwise."""
    found = None
    if isinstance(value, int) and not isinstance(value, bool):
        found = MODELS.get(value)
    elif isinstance(value, str):
        found = BY_NAME.get(value.strip().upper())
    if found is None:
        raise ValueError(value)
    return found


def revision(firmware: int) -> str:
    """The datasheet revision a receiver's firmware version speaks: "A" or "B"."""
    return "B" if firmware >= REV_B_FIRMWARE else "A"


def version(firmware: int) -> str:
    """The receiver's u16 firmware as people write it: 0x0102 is "1.2"."""
    return f"{firmware >> 8}.{firmware & 0xFF}"


@dataclass(frozen=True)
class PayloadField:
    name: str
    fmt: str  # one struct code, big-endian
    convert: Callable[[int], Any] = int


@dataclass(frozen=True)
class Kind:
    """One detector TYPE: the event it becomes and how to read its payload."""

    event: str
    severity: Severity
    fields: tuple[PayloadField, ...] = ()
    #: (field, value, severity): the severity when that field has that value.
    severity_when: tuple[tuple[str, Any, Severity], ...] = ()
    #: (field, label field, labels): a name for a numeric code, "unknown" when unlisted.
    label: tuple[str, str, Mapping[int, str]] | None = None

    @property
    def layout(self) -> struct.Struct:
        return struct.Struct(">" + "".join(f.fmt for f in self.fields))


KINDS: Mapping[int, Kind] = {
    0x01: Kind(ev.ALARM, "critical", (PayloadField("density", "B"),)),
    0x02: Kind(ev.CLEARED, "info"),
    0x03: Kind(
        ev.TEST,
        "info",
        (PayloadField("result", "B", lambda v: "pass" if v == 0 else "fail"),),
        severity_when=(("result", "fail", "warning"),),
    ),
    0x04: Kind(ev.LOW_BATTERY, "warning", (PayloadField("battery_mv", "H"),)),
    0x05: Kind(
        ev.TAMPER,
        "warning",
        (PayloadField("removed", "B", bool),),
        severity_when=(("removed", False, "info"),),
    ),
    0x06: Kind(ev.FAULT, "warning", (PayloadField("code", "B"),), label=("code", "fault", FAULTS)),
    0x07: Kind(
        ev.HEARTBEAT, "info", (PayloadField("battery_mv", "H"), PayloadField("rssi_dbm", "b"))
    ),
    0x08: Kind(ev.HUSHED, "info"),
    0x09: Kind(ev.HEAT_ALARM, "critical", (PayloadField("temperature_c", "B"),)),
}

_LAYOUTS: Mapping[int, struct.Struct] = {code: kind.layout for code, kind in KINDS.items()}

EVENT_TYPES: tuple[str, ...] = tuple(kind.event for kind in KINDS.values())


def address_hex(device: int) -> str:
    """A detector id as printed on its label: 8 upper-case hex digits."""
    return f"{device:08X}"


def frame_to_event(frame: Frame, device_id: str, now: float) -> Event:
    """The normalized event for one detector frame.

    Raises ``DeviceError`` (code ``unknown_type`` or ``malformed``) for a frame the datasheet
    does not describe. A payload longer than described is accepted and the extra ignored, so
    a newer detector firmware that appends fields still works.
    """
    kind = KINDS.get(frame.type)
    if kind is None:
        raise DeviceError(device_id, "unknown_type", f"TYPE {frame.type:#04x}")
    layout = _LAYOUTS[frame.type]
    if len(frame.payload) < layout.size:
        raise DeviceError(
            device_id,
            "malformed",
            f"TYPE {frame.type:#04x} needs {layout.size} payload bytes, got {len(frame.payload)}",
        )
    data: dict[str, Any] = {"address": address_hex(frame.device), "seq": frame.seq}
    for spec, raw in zip(kind.fields, layout.unpack_from(frame.payload), strict=True):
        data[spec.name] = spec.convert(raw)
    if kind.label is not None:
        code_field, label_field, labels = kind.label
        data[label_field] = labels.get(data[code_field], "unknown")
    severity = kind.severity
    for key, value, when in kind.severity_when:
        if data.get(key) == value:
            severity = when
    return Event(device=device_id, type=kind.event, severity=severity, data=data, ts=now)


def state_update(event: Event) -> dict[str, Any]:
    """What one detector event changes in the device's retained state."""
    data = event.data
    state: dict[str, Any] = {"last_seen": event.ts, "address": data.get("address")}
    match event.type:
        case ev.ALARM:
            state.update(alarm="smoke", density=data["density"], hushed=False)
        case ev.HEAT_ALARM:
            state.update(alarm="heat", temperature_c=data["temperature_c"], hushed=False)
        case ev.CLEARED:
            state.update(alarm="none", hushed=False)
        case ev.HUSHED:
            state.update(hushed=True)
        case ev.HEARTBEAT:
            state.update(battery_mv=data["battery_mv"], rssi_dbm=data["rssi_dbm"])
        case ev.LOW_BATTERY:
            # No frame ever says "battery fine again", so record when, not a flag that sticks.
            state.update(battery_mv=data["battery_mv"], low_battery_at=event.ts)
        case ev.TAMPER:
            state.update(tamper=data["removed"])
        case ev.FAULT:
            state.update(
                last_fault=data["fault"], last_fault_code=data["code"], last_fault_at=event.ts
            )
        case ev.TEST:
            state.update(last_test=data["result"], last_test_at=event.ts)
    return state
