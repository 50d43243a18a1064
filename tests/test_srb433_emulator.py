"""The SRB-433 emulator on its own, against the datasheet (rev B): its framing, its detector
models, and SOUND ALL by firmware revision. Host frames are built here by hand."""

from __future__ import annotations

import argparse
import asyncio
import os

import pytest

from firmware_stubs.srb433 import ReceiverEmulator
from firmware_stubs.srb433_cli import detector_arg
from firmware_stubs.srb433_wire import Frame, FrameReader, encode

DATASHEET_EXAMPLE = bytes.fromhex("AA 55 07 01 1A 2B 3C 4D 07 5A 29 5D")


def host_frame(type_: int, seq: int, payload: bytes = b"", device: int = 0) -> bytes:
    return encode(Frame(type_, device, seq, payload))


def test_framing_is_the_datasheet_example() -> None:
    assert encode(Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")) == DATASHEET_EXAMPLE
    with pytest.raises(ValueError, match="LEN"):
        encode(Frame(0x01, 1, 0, bytes(59)))


def test_reader_drops_bad_frames_whole_and_resyncs_after_their_sync_word() -> None:
    bad_crc = DATASHEET_EXAMPLE[:-1] + b"\x00"
    bad_len = b"\xaa\x55\x05" + bytes(6)
    inner = b"\xaa\x55\x14" + DATASHEET_EXAMPLE + bytes(10)  # LEN 20 swallows a real frame
    reader = FrameReader()
    wire = b"\x13" + bad_crc + bad_len + inner + DATASHEET_EXAMPLE
    out = reader.feed(wire[:15]) + reader.feed(wire[15:40]) + reader.feed(wire[40:])
    assert out == [Frame(0x01, 0x1A2B3C4D, 7, b"\x5a")] * 2
    assert reader.feed(b"\x00\xaa") + reader.feed(DATASHEET_EXAMPLE[1:]) == [out[0]]


def test_a_model_sends_only_what_its_datasheet_row_says() -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(copies=1, spacing=0) as rx:
            legacy, sd10, shd20 = rx.detector(1, 0x11), rx.detector(2, 0x01), rx.detector(3, 0x02)
            with pytest.raises(ValueError, match="SD-1L never sends TYPE 0x07"):
                await legacy.heartbeat()
            with pytest.raises(ValueError, match="SD-10 never sends TYPE 0x09"):
                await sd10.heat(70)
            assert (await shd20.heat(70)).type == 0x09
            await legacy.alarm(90)
            assert await legacy.clear() is None  # it falls silent; nothing on the wire
            assert not legacy.smoke
            assert rx.detector(4, 0x99).sends(0x09)  # a code the table lacks: not restricted

    asyncio.run(scenario())


async def send(rx: ReceiverEmulator, fd: int, data: bytes) -> None:
    heard = len(rx.host_frames)
    os.write(fd, data)
    async with asyncio.timeout(2):
        while len(rx.host_frames) == heard:
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(("firmware", "acts"), [(0x0102, False), (0x01FF, False), (0x0200, True)])
def test_sound_all_by_firmware_revision(firmware: int, acts: bool) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(firmware=firmware, sound_scale=0.01) as rx:
            det = rx.detector(0x1A2B3C4D)
            fd = os.open(rx.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                await send(rx, fd, host_frame(0x84, 1, b"\x0a"))  # 10 s, scaled to 0.1 s
                assert (rx.rev_b, rx.sounding, det.sounding) == (acts, acts, acts)
                assert rx.sound_all_seconds == ([10] if acts else [])
                assert [f.type for f in rx.ignored] == ([] if acts else [0x84])
                await asyncio.sleep(0.2)
                assert not rx.sounding  # the time asked for is over
                await send(rx, fd, host_frame(0x84, 2, b"\x00"))  # until a hush all
                await asyncio.sleep(0.2)
                assert rx.sounding == acts
                await send(rx, fd, host_frame(0x82, 3))
                assert not rx.sounding
                assert rx.hush_all_count == 1
            finally:
                os.close(fd)

    asyncio.run(scenario())


def test_cli_takes_a_detector_with_its_model() -> None:
    assert detector_arg("0badcafe:SHD-20") == (0x0BADCAFE, 0x02)
    assert detector_arg("1A2B3C4D") == (0x1A2B3C4D, 0x01)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown model"):
        detector_arg("1A2B3C4D:SD-99")


def test_a_torn_frame_is_never_interleaved_with_an_answer() -> None:
    """The wire is a UART: a ping answered while a frame is torn goes after its second half."""

    async def scenario() -> None:
        async with ReceiverEmulator(answer_delay=0, announce=False) as rx:
            tamper = Frame(0x05, 0x1A2B3C4D, 100, b"\x01")
            fd = os.open(rx.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                torn = asyncio.create_task(rx.torn(tamper, pause=0.2, at=5))
                await asyncio.sleep(0.05)
                await send(rx, fd, host_frame(0x80, 1))  # PING, answered during the pause
                await asyncio.sleep(0.05)
                first = os.read(fd, 4096)
                assert first == encode(tamper)[:5]  # the answer is held back
                await torn
                await asyncio.sleep(0.05)
                frames = FrameReader().feed(first + os.read(fd, 4096))
                assert [f.type for f in frames] == [tamper.type, 0x70]  # then the STATUS
                assert frames[0] == tamper
            finally:
                os.close(fd)

    asyncio.run(scenario())
