"""The SRB-433 codec against the datasheet, the recorded frames of every model
(tests/fixtures/srb433) and arbitrary bytes.

The CRC here is a bit-by-bit reference written from the datasheet's words, not the codec's
table, so a mistake in one does not hide in the other.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.srb433.codec import MAX_FRAME, Decoder, Deduplicator, Frame, crc16, encode
from tests.fixtures import files, load, parametrize_cases, unhex
from tests.fixtures.cases import fields, srb433_frames
from tests.reference import reference_crc

DATASHEET_EXAMPLE = bytes.fromhex("AA 55 07 01 1A 2B 3C 4D 07 5A 29 5D")


def crc_ok(wire: bytes) -> bool:
    return reference_crc(wire[2:-2]) == int.from_bytes(wire[-2:], "little")


frames = st.builds(
    Frame,
    type=st.integers(0, 255),
    device=st.integers(0, 0xFFFFFFFF),
    seq=st.integers(0, 255),
    payload=st.binary(max_size=58),
)


def feed_all(decoder: Decoder, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# -- the datasheet ---------------------------------------------------------------------------


def test_datasheet_example_encodes() -> None:
    assert encode(Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")) == DATASHEET_EXAMPLE


def test_datasheet_example_crc() -> None:
    body = DATASHEET_EXAMPLE[2:10]
    assert crc16(body) == 0x5D29 == reference_crc(body)


def test_datasheet_example_decodes() -> None:
    assert Decoder().feed(DATASHEET_EXAMPLE) == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")]


@parametrize_cases("srb433", srb433_frames, "recorded")
def test_every_recorded_frame_round_trips(recorded: dict[str, Any]) -> None:
    """Every frame of every model's recording, either direction (tests/fixtures/srb433)."""
    type_, device, seq, payload = fields(recorded)
    wire = unhex(recorded["hex"])
    assert encode(Frame(type_, device, seq, payload)) == wire
    assert wire[:2] == b"\xaa\x55"
    assert wire[2] == 6 + len(payload)
    assert wire[3] == type_
    assert wire[4:8] == device.to_bytes(4, "big")
    assert wire[8] == seq
    assert crc_ok(wire)
    assert Decoder().feed(wire) == [Frame(type_, device, seq, payload)]


def test_the_recordings_hold_every_type_of_the_datasheet() -> None:
    recorded = {f["type"] for path in files("srb433") for _, f in srb433_frames(load(path))}
    detector, receiver, host = set(range(0x01, 0x0A)), {0x70, 0x71}, set(range(0x80, 0x85))
    assert recorded == detector | receiver | host


@pytest.mark.parametrize(
    "bad",
    [Frame(256, 1, 0), Frame(1, 1, -1), Frame(1, 1 << 32, 0), Frame(1, 1, 0, bytes(59))],
)
def test_encode_refuses_what_the_wire_cannot_carry(bad: Frame) -> None:
    with pytest.raises(ValueError, match=r"payload|device|type"):
        encode(bad)


# -- resynchronisation -----------------------------------------------------------------------


def test_bad_crc_is_dropped_and_next_frame_kept() -> None:
    broken = bytearray(DATASHEET_EXAMPLE)
    broken[-1] ^= 0x01
    good = encode(Frame(0x07, 0xCAFEBABE, 1, b"\x0b\xb8\xc4"))
    decoder = Decoder()
    assert decoder.feed(bytes(broken) + good) == [Frame(0x07, 0xCAFEBABE, 1, b"\x0b\xb8\xc4")]
    assert decoder.bad_crc == 1


@pytest.mark.parametrize("length", [0, 5, 65, 255])
def test_len_out_of_range_resyncs_after_the_sync_word(length: int) -> None:
    decoder = Decoder()
    out = decoder.feed(b"\xaa\x55" + bytes((length,)) + DATASHEET_EXAMPLE)
    assert out == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")]
    assert decoder.bad_len == 1


def test_frame_inside_a_bad_frame_is_found() -> None:
    """Resync starts right after the tried sync word, so a frame it swallowed is recovered."""
    wrapper = b"\xaa\x55\x14" + DATASHEET_EXAMPLE + bytes(10)  # LEN 20 covers the real frame
    assert Decoder().feed(wrapper) == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")]


def test_false_sync_claiming_64_bytes_does_not_stall_a_frame_behind_it() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x13\xaa\x55\x40\x01" + DATASHEET_EXAMPLE) == [
        Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")
    ]
    assert decoder.skipped == 1
    assert decoder.buffered == 0


def test_torn_frame_waits_for_the_rest() -> None:
    decoder = Decoder()
    assert decoder.feed(DATASHEET_EXAMPLE[:7]) == []
    assert decoder.buffered == 7
    assert decoder.feed(DATASHEET_EXAMPLE[7:]) == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")]
    assert decoder.buffered == 0


def test_sync_word_split_across_reads() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x00\x00\xaa") == []
    assert decoder.feed(DATASHEET_EXAMPLE[1:]) == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")]


def test_reset_forgets_a_torn_frame() -> None:
    decoder = Decoder()
    decoder.feed(DATASHEET_EXAMPLE[:6])
    decoder.reset()
    assert decoder.feed(DATASHEET_EXAMPLE[6:]) == []


# -- properties ------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_any_bytes_never_raise_nor_yield_a_bad_crc(data: bytes, cuts: list[int]) -> None:
    decoder = Decoder()
    for chunk in split(data, cuts):
        for frame in decoder.feed(chunk):
            wire = encode(frame)
            assert crc_ok(wire)
            assert wire in data
        assert decoder.buffered < MAX_FRAME


@settings(deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 250), max_size=10))
def test_noise_with_sync_words_never_yields_a_bad_crc(data: bytes, cuts: list[int]) -> None:
    """Bias the noise towards sync words and plausible lengths, where the bugs would hide."""
    noisy = data.replace(b"\x00", b"\xaa\x55").replace(b"\x01", b"\xaa\x55\x07")
    decoder = Decoder()
    for frame in feed_all(decoder, split(noisy, cuts)):
        assert crc_ok(encode(frame))


@settings(deadline=None)
@given(frames, st.binary(max_size=300), st.binary(max_size=300))
def test_frame_in_noise_is_recovered(frame: Frame, before: bytes, after: bytes) -> None:
    assert frame in Decoder().feed(before + encode(frame) + after)


@settings(deadline=None)
@given(frames, st.integers(0, 255), st.binary(max_size=70))
def test_frame_swallowed_by_a_false_header_is_recovered(
    frame: Frame, length: int, filler: bytes
) -> None:
    """Noise that reads as a header whose LEN reaches into (or past) the real frame."""
    assert frame in Decoder().feed(b"\xaa\x55" + bytes((length,)) + filler + encode(frame))


@settings(deadline=None)
@given(frames, st.binary(max_size=200), st.lists(st.integers(0, 400), max_size=12))
def test_frame_in_noise_is_recovered_whatever_the_reads(
    frame: Frame, before: bytes, cuts: list[int]
) -> None:
    data = before + encode(frame)
    assert frame in feed_all(Decoder(), split(data, cuts))


@settings(deadline=None)
@given(st.lists(frames, min_size=1, max_size=8), st.lists(st.integers(0, 700), max_size=20))
def test_split_anywhere_decodes_the_same(batch: list[Frame], cuts: list[int]) -> None:
    data = b"".join(encode(f) for f in batch)
    assert feed_all(Decoder(), split(data, cuts)) == batch


@settings(deadline=None)
@given(frames)
def test_one_byte_at_a_time(frame: Frame) -> None:
    wire = encode(frame)
    assert feed_all(Decoder(), [wire[i : i + 1] for i in range(len(wire))]) == [frame]


# -- deduplication ---------------------------------------------------------------------------


def test_triple_transmission_counts_once() -> None:
    dedup = Deduplicator(window=5.0)
    frame = Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")
    assert [dedup.accept(frame, t) for t in (100.0, 100.2, 100.4)] == [True, False, False]


def test_next_seq_or_other_type_or_device_is_new() -> None:
    dedup = Deduplicator(window=5.0)
    assert dedup.accept(Frame(0x01, 1, 7, b"\x5a"), 0.0)
    assert dedup.accept(Frame(0x01, 1, 8, b"\x5a"), 0.1)
    assert dedup.accept(Frame(0x02, 1, 7), 0.2)
    assert dedup.accept(Frame(0x01, 2, 7, b"\x5a"), 0.3)


def test_same_key_after_the_window_is_new_again() -> None:
    """SEQ wraps after 256 events; an old key seen much later is a new event."""
    dedup = Deduplicator(window=5.0)
    frame = Frame(0x07, 1, 255)
    assert dedup.accept(frame, 0.0)
    assert not dedup.accept(frame, 4.9)
    assert dedup.accept(frame, 5.1)


def test_dedup_memory_is_bounded_by_the_window() -> None:
    dedup = Deduplicator(window=2.0)
    for i in range(10_000):
        dedup.accept(Frame(0x07, i, i & 0xFF), i * 0.1)
    assert len(dedup) <= 21
