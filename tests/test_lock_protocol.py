"""The DL-B2 codec against the datasheet and the recorded GATT transcript
(tests/fixtures/dl_b2): COMMAND bytes and MAC, every EVENTS type and what the profile makes of
it, the manufacturer data, and malformed frames raising the codec's own error."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import profile
from drivers.ble import protocol as p
from tests.fixtures import Fixture, files, load, parametrize_by_fixture, parametrize_cases, unhex
from tests.fixtures.cases import dl_b2_commands, dl_b2_notifications

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
CHALLENGE = bytes(range(16))


def test_command_layout_and_mac_vector() -> None:
    frame = p.build_command(KEY, CHALLENGE, p.Op.UNLOCK, 0x1234, 5)
    assert len(frame) == 21
    assert frame[:5] == bytes([0x01, 0x12, 0x34, 0x00, 0x05])  # OP, SEQ BE, ARG BE
    # HMAC-SHA256(key, challenge ‖ OP ‖ SEQ ‖ ARG)[:16], worked out once by hand
    assert frame[5:].hex() == "d2d0f8ff8f45e5d15e94e92b2e05eaf9"


@given(
    challenge=st.binary(min_size=16, max_size=16),
    op=st.sampled_from(list(p.Op)),
    seq=st.integers(0, 0xFFFF),
    arg=st.integers(0, 0xFFFF),
)
def test_mac_is_truncated_hmac_over_challenge_and_header(
    challenge: bytes, op: int, seq: int, arg: int
) -> None:
    frame = p.build_command(KEY, challenge, op, seq, arg)
    expected = hmac.new(KEY, challenge + frame[:5], hashlib.sha256).digest()[:16]
    assert frame[5:] == expected


@pytest.mark.parametrize(
    ("key", "challenge", "seq"),
    [(KEY[:15], CHALLENGE, 1), (KEY, CHALLENGE[:8], 1), (KEY, CHALLENGE, 0x10000)],
    ids=["short-key", "short-challenge", "seq-overflow"],
)
def test_command_rejects_bad_inputs(key: bytes, challenge: bytes, seq: int) -> None:
    with pytest.raises(ValueError, match=r"key|challenge|range"):
        p.build_command(key, challenge, p.Op.LOCK, seq, 0)


# Every notification of the recorded GATT transcript (tests/fixtures/dl_b2), as records.
FRAMES = [
    (unhex(note["hex"]), p.parse_event(unhex(note["hex"])))
    for path in files("dl_b2")
    for _, note in dl_b2_notifications(load(path))
]


@parametrize_cases("dl_b2", dl_b2_notifications, "note")
def test_parse_every_recorded_notification(note: dict[str, Any]) -> None:
    frame = unhex(note["hex"])
    record = p.parse_event(frame)
    assert p.event_type_of(record) == note["type"]
    assert {f: getattr(record, f) for f in record.__dataclass_fields__} == note["fields"]
    assert p.encode_event(record) == frame


def test_every_event_type_is_covered() -> None:
    assert {p.event_type_of(r) for _, r in FRAMES} == set(p.EventType)


def signed_commands(fx: Fixture) -> Iterator[tuple[str, dict[str, Any]]]:
    """The recorded commands written after reading a challenge (one was sent without)."""
    return ((name, step) for name, step in dl_b2_commands(fx) if "challenge" in step)


@parametrize_cases("dl_b2", signed_commands, "step")
def test_recorded_commands_are_built_byte_for_byte(step: dict[str, Any]) -> None:
    """The lock accepted (or refused, as recorded) exactly these bytes."""
    cmd = step["command"]
    key = bytes(16) if cmd.get("note") == "wrong key" else bytes.fromhex(step["key"])
    built = p.build_command(key, unhex(step["challenge"]), cmd["op"], cmd["seq"], cmd["arg"])
    assert built == unhex(cmd["hex"])


def test_ack_codes_by_name() -> None:
    assert [p.Ack(1, n).code for n in range(6)] == [
        "ok", "bad_mac", "stale_challenge", "busy", "jammed", "unknown_5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x11",
        b"\x11\x00",
        bytes.fromhex("11 0001 02 0000"),
        bytes.fromhex("1a 0001 00 00 34"),
    ],
    ids=["empty", "type-only", "no-payload", "short-user", "short-status"],
)
def test_truncated_frames_raise_truncated(frame: bytes) -> None:
    with pytest.raises(p.TruncatedFrame):
        p.parse_event(frame)


def test_unknown_type_raises_with_the_type() -> None:
    with pytest.raises(p.UnknownEventType) as info:
        p.parse_event(bytes.fromhex("2f 0001 00"))
    assert info.value.type == 0x2F
    assert isinstance(info.value, ValueError)


def test_trailing_bytes_from_newer_firmware_are_ignored() -> None:
    assert p.parse_event(bytes.fromhex("13 0004 ffff")) == p.DoorOpened(4)


@given(st.binary(max_size=40))
def test_any_bytes_parse_or_raise_frame_error(frame: bytes) -> None:
    try:
        record = p.parse_event(frame)
    except p.FrameError:
        return
    assert isinstance(record, p.Notification)


@parametrize_by_fixture("dl_b2")
def test_recorded_manufacturer_data(fixture: Fixture) -> None:
    for ad in fixture["advertisements"]:
        mfr = {int(company): unhex(raw) for company, raw in ad["manufacturer_data"].items()}
        state = p.parse_manufacturer_data({0x004C: b"\x01", **mfr})
        assert state is not None
        assert state.counter == ad["counter"]
        assert profile.advert_state(state) == ad["state"]


def test_manufacturer_data() -> None:
    state = p.parse_manufacturer_data({0x004C: b"\x01", 0xFFFF: bytes([1, 0, 87, 200])})
    assert state == p.AdvertState(lock=1, door=0, battery_pct=87, counter=200)
    assert p.parse_manufacturer_data({0x004C: b"\x01"}) is None
    with pytest.raises(p.TruncatedFrame):
        p.parse_manufacturer_data({0xFFFF: b"\x01\x00"})
    assert p.counter_moved(250, 3) == 9


@parametrize_cases("dl_b2", dl_b2_notifications, "note")
def test_profile_gives_each_recorded_notification_its_meaning(note: dict[str, Any]) -> None:
    record = p.parse_event(unhex(note["hex"]))
    if isinstance(record, p.Ack):
        assert record.code == note["ack"]
        assert type(record) not in profile.EVENTS  # an answer, not an event
        return
    if isinstance(record, p.Status):
        assert profile.status_state(record) == note["state"]
        assert type(record) not in profile.EVENTS
        return
    spec = profile.EVENTS[type(record)]
    event = note["event"]
    assert (spec.type, spec.severity) == (event["type"], event["severity"])
    assert {**spec.data(record), "counter": record.seq} == event["data"]
    assert spec.state(record) == note["state"]


def test_profile_maps_every_event_record() -> None:
    assert set(profile.EVENTS) == {type(r) for _, r in FRAMES} - {p.Ack, p.Status}
    # Values no recording holds: names for codes newer firmware may send.
    assert profile.EVENTS[p.Locked].data(p.Locked(1, 9)) == {"method": "unknown_9"}
    assert profile.EVENTS[p.Unlocked].data(p.Unlocked(1, 8, 0)) == {
        "method": "unknown_8", "user": None,
    }  # fmt: skip
    assert profile.status_state(p.Status(1, 3, 1, 12000)) == {
        "lock": "unknown_3", "door": "open", "battery_mv": 12000,
    }  # fmt: skip
