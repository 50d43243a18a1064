"""Detector frames → normalized events and retained state, per the datasheet's table."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.srb433.codec import Frame
from drivers.srb433.profile import EVENT_TYPES, frame_to_event, state_update
from gatewayd.errors import DeviceError

ADDR = 0x1A2B3C4D
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("type_", "payload", "event", "severity", "data"),
    [
        (0x01, b"\x5a", "smoke.alarm", "critical", {"density": 90}),
        (0x02, b"", "smoke.cleared", "info", {}),
        (0x03, b"\x00", "smoke.test", "info", {"result": "pass"}),
        (0x03, b"\x01", "smoke.test", "warning", {"result": "fail"}),
        (0x04, b"\x0a\x28", "smoke.low_battery", "warning", {"battery_mv": 2600}),
        (0x05, b"\x01", "smoke.tamper", "warning", {"removed": True}),
        (0x05, b"\x00", "smoke.tamper", "info", {"removed": False}),
        (0x06, b"\x01", "smoke.fault", "warning", {"code": 1, "fault": "chamber_dirty"}),
        (0x06, b"\x02", "smoke.fault", "warning", {"code": 2, "fault": "sensor_failure"}),
        (0x06, b"\x03", "smoke.fault", "warning", {"code": 3, "fault": "end_of_life"}),
        (0x06, b"\x09", "smoke.fault", "warning", {"code": 9, "fault": "unknown"}),
        (
            0x07,
            b"\x0b\xb8\xb9",
            "smoke.heartbeat",
            "info",
            {"battery_mv": 3000, "rssi_dbm": -71},
        ),
        (0x08, b"", "smoke.hushed", "info", {}),
        (0x09, b"\x41", "smoke.heat_alarm", "critical", {"temperature_c": 65}),
    ],
)
def test_frame_to_event(
    type_: int, payload: bytes, event: str, severity: str, data: dict[str, Any]
) -> None:
    ev = frame_to_event(Frame(type_, ADDR, 42, payload), "smoke-101", NOW)
    assert (ev.device, ev.type, ev.severity, ev.ts) == ("smoke-101", event, severity, NOW)
    assert dict(ev.data) == {"address": "1A2B3C4D", "seq": 42, **data}


def test_every_event_type_is_a_smoke_event() -> None:
    assert len(EVENT_TYPES) == 9
    assert all(t.startswith("smoke.") for t in EVENT_TYPES)


def test_longer_payload_from_newer_firmware_is_accepted() -> None:
    ev = frame_to_event(Frame(0x01, ADDR, 1, b"\x5a\xff\xff"), "smk", NOW)
    assert ev.data["density"] == 90


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Frame(0x01, ADDR, 1, b""), "malformed"),
        (Frame(0x07, ADDR, 1, b"\x0b\xb8"), "malformed"),
        (Frame(0x0A, ADDR, 1, b""), "unknown_type"),
    ],
)
def test_frames_the_datasheet_does_not_describe(frame: Frame, code: str) -> None:
    with pytest.raises(DeviceError) as info:
        frame_to_event(frame, "smk", NOW)
    assert (info.value.device, info.value.code) == ("smk", code)


@pytest.mark.parametrize(
    ("type_", "payload", "state"),
    [
        (0x01, b"\x5a", {"alarm": "smoke", "density": 90, "hushed": False}),
        (0x09, b"\x41", {"alarm": "heat", "temperature_c": 65, "hushed": False}),
        (0x02, b"", {"alarm": "none", "hushed": False}),
        (0x08, b"", {"hushed": True}),
        (0x07, b"\x0b\xb8\xb9", {"battery_mv": 3000, "rssi_dbm": -71}),
        (0x04, b"\x0a\x28", {"battery_mv": 2600, "low_battery_at": NOW}),
        (0x05, b"\x01", {"tamper": True}),
        (
            0x06,
            b"\x01",
            {"last_fault": "chamber_dirty", "last_fault_code": 1, "last_fault_at": NOW},
        ),
        (0x03, b"\x01", {"last_test": "fail", "last_test_at": NOW}),
    ],
)
def test_state_update(type_: int, payload: bytes, state: dict[str, Any]) -> None:
    ev = frame_to_event(Frame(type_, ADDR, 3, payload), "smk", NOW)
    assert state_update(ev) == {"last_seen": NOW, "address": "1A2B3C4D", **state}
