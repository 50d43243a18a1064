"""Detector frames → normalized events and retained state, per the datasheet's table: every
frame recorded from every detector model (tests/fixtures/srb433), and the malformed ones."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.srb433.codec import Frame
from drivers.srb433.profile import EVENT_TYPES, frame_to_event, state_update
from gatewayd.errors import DeviceError
from tests.fixtures import parametrize_cases
from tests.fixtures.cases import at, detector_frames, fields

ADDR = 0x1A2B3C4D
NOW = 1_700_000_000.0


@parametrize_cases("srb433", detector_frames, "recorded", kind="detector")
def test_frame_to_event(recorded: dict[str, Any]) -> None:
    """Each recorded frame of each detector model becomes the event its recording names."""
    ev = frame_to_event(Frame(*fields(recorded)), "smoke-101", NOW)
    expected = recorded["event"]
    assert (ev.device, ev.type, ev.severity, ev.ts) == (
        "smoke-101", expected["type"], expected["severity"], NOW,
    )  # fmt: skip
    assert dict(ev.data) == expected["data"]


def test_a_fault_code_the_datasheet_does_not_list_is_named_unknown() -> None:
    ev = frame_to_event(Frame(0x06, ADDR, 42, b"\x09"), "smoke-101", NOW)
    assert (ev.type, ev.severity) == ("smoke.fault", "warning")
    assert dict(ev.data) == {"address": "1A2B3C4D", "seq": 42, "code": 9, "fault": "unknown"}


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


@parametrize_cases("srb433", detector_frames, "recorded", kind="detector")
def test_state_update(recorded: dict[str, Any]) -> None:
    ev = frame_to_event(Frame(*fields(recorded)), "smk", NOW)
    assert state_update(ev) == {"last_seen": NOW, **at(recorded["state"], NOW)}
