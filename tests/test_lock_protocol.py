"""The DL-B2 codec against the datasheet: COMMAND bytes and MAC, every EVENTS type, the
manufacturer data, and malformed frames raising the codec's own error."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import profile
from drivers.ble import protocol as p

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


# One frame per datasheet row: TYPE, SEQ (BE) and the payload, written out byte by byte.
FRAMES = [
    (bytes.fromhex("10 0007 00"), p.Ack(7, 0)),
    (bytes.fromhex("10 0007 02"), p.Ack(7, 2)),
    (bytes.fromhex("11 0102 02 000004d2"), p.Unlocked(0x0102, 2, 1234)),
    (bytes.fromhex("12 0103 01"), p.Locked(0x0103, 1)),
    (bytes.fromhex("13 0104"), p.DoorOpened(0x0104)),
    (bytes.fromhex("14 0105"), p.DoorClosed(0x0105)),
    (bytes.fromhex("15 0106 003d"), p.HeldOpen(0x0106, 61)),
    (bytes.fromhex("16 0107"), p.Forced(0x0107)),
    (bytes.fromhex("17 0108 03 0000002a"), p.AccessDenied(0x0108, 3, 42)),
    (bytes.fromhex("18 0109 2ee0"), p.OnBattery(0x0109, 12000)),
    (bytes.fromhex("19 010a"), p.Tamper(0x010A)),
    (bytes.fromhex("1a 010b 02 01 3458"), p.Status(0x010B, 2, 1, 13400)),
]


@pytest.mark.parametrize(("frame", "record"), FRAMES, ids=lambda v: type(v).__name__)
def test_parse_every_event_type(frame: bytes, record: p.Notification) -> None:
    assert p.parse_event(frame) == record
    assert p.encode_event(record) == frame


def test_every_event_type_is_covered() -> None:
    assert {p.event_type_of(r) for _, r in FRAMES} == set(p.EventType)


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


def test_manufacturer_data() -> None:
    state = p.parse_manufacturer_data({0x004C: b"\x01", 0xFFFF: bytes([1, 0, 87, 200])})
    assert state == p.AdvertState(lock=1, door=0, battery_pct=87, counter=200)
    assert p.parse_manufacturer_data({0x004C: b"\x01"}) is None
    with pytest.raises(p.TruncatedFrame):
        p.parse_manufacturer_data({0xFFFF: b"\x01\x00"})
    assert p.counter_moved(250, 3) == 9


def test_profile_maps_every_event_record() -> None:
    assert set(profile.EVENTS) == {type(r) for _, r in FRAMES} - {p.Ack, p.Status}
    forced = profile.EVENTS[p.Forced]
    assert (forced.type, forced.severity) == ("door.forced", "critical")
    unlocked = profile.EVENTS[p.Unlocked]
    assert unlocked.data(p.Unlocked(1, 2, 1234)) == {"method": "card", "user": 1234}
    assert unlocked.data(p.Unlocked(1, 1, 0)) == {"method": "remote", "user": None}
    assert unlocked.state(p.Unlocked(1, 7, 0)) == {"lock": "held_open"}
    assert profile.EVENTS[p.AccessDenied].severity == "warning"
    assert profile.EVENTS[p.OnBattery].severity == "warning"
    assert profile.status_state(p.Status(1, 0, 1, 12000)) == {
        "lock": "locked", "door": "open", "battery_mv": 12000,
    }  # fmt: skip
    assert profile.EVENTS[p.Locked].data(p.Locked(1, 9)) == {"method": "unknown_9"}
