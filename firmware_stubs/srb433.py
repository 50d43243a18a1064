"""An SRB-433 smoke-alarm receiver emulator on a pseudo-terminal, with scriptable detectors.

It speaks the datasheet (shared/datasheets/smoke-rf-bridge.md, rev B) over a real pty, so the
real driver opens it with pyserial as it would a USB receiver. Detectors transmit every event 3
times with one SEQ and repeat a smoke alarm while smoke persists, and send only what their model
sends (an SD-1L has no heartbeat, only an SHD-20 a heat alarm). The receiver answers PING, runs
pair mode, hush all and remove, and from firmware 2.0 (rev B, ``firmware=0x0200``) sound all;
a rev A receiver (the default, 0x0102) ignores sound all as it ignores any TYPE it does not know.
Faults can be injected: stray bytes, torn frames, bad CRCs, noise bursts, and unplug/replug
(the pty and its symlink disappear, then come back).

It is a test and demo peer with its own framing (``srb433_wire``), never the driver's codec:
sharing it would hide the codec's mistakes (STYLE §14). It must never be pointed at a real
serial device. Run alone::

    python -m firmware_stubs.srb433 --link /tmp/srb433 --detector 1A2B3C4D --scenario demo
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import tty
from typing import Any

from firmware_stubs.srb433_detector import Detector, parse_address
from firmware_stubs.srb433_wire import (
    HUSH_ALL,
    PAIR,
    PAIRED,
    PING,
    REMOVE,
    REV_B_FIRMWARE,
    SOUND_ALL,
    STATUS,
    Frame,
    FrameLike,
    FrameReader,
    encode,
)

__all__ = ["Detector", "Frame", "ReceiverEmulator", "parse_address"]


class ReceiverEmulator:
    """The receiver end of a pty. ``path`` is what a driver opens (the link if one was given).

    Timing is configurable so tests run fast: ``spacing`` between a frame's copies (datasheet
    ~0.2 s), ``alarm_repeat`` (30 s), ``answer_delay`` for PING (< 0.1 s), ``pair_scale``
    multiplies the seconds a PAIR command asks for, ``sound_scale`` those of a SOUND ALL.
    ``firmware`` is what the status frame reports and decides the revision: 0x0200 and later
    is rev B and acts on SOUND ALL (0x84); earlier is rev A and ignores it.
    """

    def __init__(
        self,
        link: str | None = None,
        *,
        spacing: float = 0.2,
        alarm_repeat: float = 30.0,
        copies: int = 3,
        answer_delay: float = 0.01,
        firmware: int = 0x0102,
        pair_scale: float = 1.0,
        sound_scale: float = 1.0,
        announce: bool = True,
    ) -> None:
        self.link = link
        self.spacing = spacing
        self.alarm_repeat = alarm_repeat
        self.copies = copies
        self.answer_delay = answer_delay
        self.firmware = firmware
        self.pair_scale = pair_scale
        self.sound_scale = sound_scale
        self.announce = announce
        self.answer_pings = True
        self.detectors: dict[int, Detector] = {}
        self.paired: set[int] = set()
        self.joining: list[tuple[int, int]] = []  # (address, model) waiting for pair mode
        self.host_frames: list[Frame] = []
        #: ``time.monotonic()`` when each host frame's last byte was read (benchmarks)
        self.host_frames_at: list[float] = []
        self.wire_in = bytearray()  # every byte the host sent, for byte-exact checks
        self.hush_all_count = 0
        self.sound_all_seconds: list[int] = []  # every SOUND ALL acted on (rev B), as asked
        self.sounding = False  # the paired detectors' sounders are on because of SOUND ALL
        self.ignored: list[Frame] = []  # host frames this firmware did not act on
        self.dropped = 0  # frames lost because nobody was reading, or unplugged
        self.slave_path = ""
        self._master = self._slave = -1
        self._seq = 0
        self._pair_until = 0.0
        self._decoder = FrameReader()
        self._sound_end: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heard = asyncio.Event()
        self._held: bytearray | None = None  # frames queued behind a torn frame's second half

    @property
    def path(self) -> str:
        return self.link or self.slave_path

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    @property
    def rev_b(self) -> bool:
        return self.firmware >= REV_B_FIRMWARE

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._plug()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._silence()
        self._unplug()

    async def __aenter__(self) -> ReceiverEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _plug(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw, or the line discipline would echo our frames back and mangle 0x0D bytes.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.slave_path = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, self.link)  # atomic: a reader never sees a missing link mid-swap
        self._decoder.reset()
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        if self.announce:
            self._status()

    def _unplug(self) -> None:
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    async def unplug(self) -> None:
        """As if the USB receiver were pulled: the device and its link disappear."""
        self._unplug()

    async def replug(self) -> None:
        """A fresh device under the same link (a new pty, as a new USB enumeration would be)."""
        self._unplug()
        self._plug()

    # -- radio and wire ----------------------------------------------------------------------

    def detector(self, address: int | str, model: int = 1, *, paired: bool = True) -> Detector:
        addr = parse_address(address)
        det = self.detectors.setdefault(addr, Detector(self, addr, model))
        if paired:
            self.paired.add(addr)
        return det

    def radio(self, frame: Frame) -> None:
        """A frame heard over the air: the receiver passes it on only from paired detectors."""
        if frame.device in self.paired:
            self.write(encode(frame))

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            return
        if self._master < 0:
            self.dropped += 1
            return
        try:
            os.write(self._master, data)
        except (BlockingIOError, OSError):
            self.dropped += 1

    def _send(self, type_: int, payload: bytes, device: int = 0) -> None:
        self._seq = (self._seq + 1) & 0xFF
        self.write(encode(Frame(type_, device, self._seq, payload)))

    def _status(self) -> None:
        payload = self.firmware.to_bytes(2, "big") + bytes((len(self.paired) & 0xFF,))
        self._send(STATUS, payload)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the last slave closed: no host right now
            return
        self.wire_in += data
        at = time.monotonic()
        for frame in self._decoder.feed(data):
            self.host_frames.append(frame)
            self.host_frames_at.append(at)
            self._on_host_frame(frame)
        self._heard.set()

    def _on_host_frame(self, frame: Frame) -> None:
        loop = asyncio.get_running_loop()
        if frame.type == PING and self.answer_pings:
            loop.call_later(self.answer_delay, self._answer_if_plugged, self._master)
        elif frame.type == PING:
            pass  # fault injection: a receiver that stopped answering
        elif frame.type == PAIR and frame.payload:
            self._pair_until = loop.time() + frame.payload[0] * self.pair_scale
            self._admit_joining()
        elif frame.type == HUSH_ALL:
            self.hush_all_count += 1
            self._silence()  # "0x82 silences a sound-all too"
        elif frame.type == REMOVE:
            self.paired.discard(frame.device)
        elif frame.type == SOUND_ALL and self.rev_b and frame.payload:
            self._sound_all(frame.payload[0])
        else:  # rev A and SOUND ALL, a TYPE no revision knows, a PAIR without its seconds
            self.ignored.append(frame)

    def _sound_all(self, seconds: int) -> None:
        """Every paired detector sounds (interconnection); none reports an alarm of its own,
        so nothing goes back to the host. 0 s: until a hush all."""
        self.sound_all_seconds.append(seconds)
        self.sounding = True
        if self._sound_end is not None:
            self._sound_end.cancel()
            self._sound_end = None
        if seconds:
            delay = seconds * self.sound_scale
            self._sound_end = asyncio.get_running_loop().call_later(delay, self._silence)

    def _silence(self) -> None:
        self.sounding = False
        if self._sound_end is not None:
            self._sound_end.cancel()
            self._sound_end = None

    def _answer_if_plugged(self, master: int) -> None:
        if master == self._master:  # not a PING from before a replug
            self._status()

    def _admit_joining(self) -> None:
        if asyncio.get_running_loop().time() >= self._pair_until:
            return
        for address, model in self.joining:
            self.paired.add(address)
            self.detector(address, model)
            self._send(PAIRED, address.to_bytes(4, "big") + bytes((model,)))
        self.joining.clear()

    def queue_join(self, address: int | str, model: int = 1) -> None:
        """A detector whose pair button is pressed: it joins during the next pair mode."""
        self.joining.append((parse_address(address), model))
        self._admit_joining()

    async def wait_host_frame(
        self, type_: int, count: int = 1, timeout: float = 5.0
    ) -> list[Frame]:
        async with asyncio.timeout(timeout):
            while len(got := [f for f in self.host_frames if f.type == type_]) < count:
                self._heard.clear()
                await self._heard.wait()
        return got

    # -- fault injection ---------------------------------------------------------------------

    async def stray(self, count: int = 5) -> None:
        """A few random bytes between frames, as radio noise leaves them."""
        self.write(random.randbytes(count))

    async def noise_burst(self, count: int = 256, syncs: int = 4) -> None:
        """Noise that also contains false sync words."""
        noise = bytearray(random.randbytes(count))
        for _ in range(syncs):
            at = random.randrange(max(1, count - 3))
            noise[at : at + 3] = b"\xaa\x55" + bytes((random.randrange(256),))
        self.write(bytes(noise[:count]))

    async def torn(self, frame: FrameLike, pause: float = 0.05, at: int | None = None) -> None:
        """One frame in two writes with a pause between, as a USB read can split it.

        The wire is a UART: whatever the receiver sends meanwhile (a ping's status) queues
        behind the frame's second half instead of landing inside it."""
        data = encode(frame)
        cut = at if at is not None else len(data) // 2
        self.write(data[:cut])
        self._held = bytearray()
        try:
            await asyncio.sleep(pause)
        finally:
            held, self._held = bytes(self._held), None
            self.write(data[cut:] + held)

    async def bad_crc(self, frame: FrameLike) -> None:
        data = bytearray(encode(frame))
        data[-1] ^= 0xFF
        self.write(bytes(data))


if __name__ == "__main__":  # pragma: no cover - run by hand and by the docs
    from firmware_stubs.srb433_cli import main

    main()
