"""An SRB-433 smoke-alarm receiver emulator on a pseudo-terminal, with scriptable detectors.

It speaks the datasheet (docs: /work/shared/datasheets/smoke-rf-bridge.md) over a real pty, so
the real driver opens it with pyserial as it would a USB receiver. Detectors transmit every
event 3 times with one SEQ and repeat a smoke alarm while smoke persists; the receiver answers
PING, runs pair mode, hush-all and remove. Faults can be injected: stray bytes, torn frames,
bad CRCs, noise bursts, and unplug/replug (the pty and its symlink disappear, then come back).

It is a test and demo peer and reuses the driver's codec for framing; it must never be pointed
at a real serial device. Run alone::

    python -m firmware_stubs.srb433 --link /tmp/srb433 --detector 1A2B3C4D --scenario demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import tty
from collections.abc import Callable
from typing import Any

from drivers.srb433.codec import Decoder, Frame, encode

STATUS, PAIRED = 0x70, 0x71
PING, PAIR, HUSH_ALL, REMOVE = 0x80, 0x81, 0x82, 0x83


def parse_address(address: int | str) -> int:
    return int(address, 16) if isinstance(address, str) else address


class Detector:
    """One radio smoke detector. Every ``await``-ed event returns once all copies are sent."""

    def __init__(self, receiver: ReceiverEmulator, address: int, model: int = 1) -> None:
        self.receiver = receiver
        self.address = address
        self.model = model
        self.seq = random.randrange(256)
        self.smoke = False
        self._repeat: asyncio.Task[None] | None = None

    async def transmit(self, type_: int, payload: bytes = b"") -> Frame:
        """A new event: next SEQ, sent ``copies`` times ``spacing`` seconds apart."""
        self.seq = (self.seq + 1) & 0xFF
        frame = Frame(type_, self.address, self.seq, payload)
        rx = self.receiver
        for copy in range(rx.copies):
            if copy:
                await asyncio.sleep(rx.spacing)
            rx.radio(frame)
        return frame

    async def alarm(self, density: int = 120) -> Frame:
        """Smoke: alarm now, and again every ``alarm_repeat`` s with a new SEQ until cleared."""
        self.smoke = True
        frame = await self.transmit(0x01, bytes((density,)))
        if self._repeat is None or self._repeat.done():
            self._repeat = self.receiver.spawn(self._repeat_alarm(density), f"repeat:{self}")
        return frame

    async def _repeat_alarm(self, density: int) -> None:
        while self.smoke:
            await asyncio.sleep(self.receiver.alarm_repeat)
            if self.smoke:
                await self.transmit(0x01, bytes((density,)))

    async def clear(self) -> Frame:
        self.smoke = False
        if self._repeat is not None:
            self._repeat.cancel()
        return await self.transmit(0x02)

    async def test(self, passed: bool = True) -> Frame:
        return await self.transmit(0x03, bytes((0 if passed else 1,)))

    async def low_battery(self, battery_mv: int = 2600) -> Frame:
        return await self.transmit(0x04, battery_mv.to_bytes(2, "big"))

    async def tamper(self, removed: bool = True) -> Frame:
        return await self.transmit(0x05, bytes((int(removed),)))

    async def fault(self, code: int = 1) -> Frame:
        return await self.transmit(0x06, bytes((code,)))

    async def heartbeat(self, battery_mv: int = 3000, rssi_dbm: int = -60) -> Frame:
        return await self.transmit(
            0x07, battery_mv.to_bytes(2, "big") + rssi_dbm.to_bytes(1, "big", signed=True)
        )

    async def hush(self) -> Frame:
        return await self.transmit(0x08)

    async def heat(self, temperature_c: int = 65) -> Frame:
        return await self.transmit(0x09, bytes((temperature_c,)))

    def __str__(self) -> str:
        return f"{self.address:08X}"


class ReceiverEmulator:
    """The receiver end of a pty. ``path`` is what a driver opens (the link if one was given).

    Timing is configurable so tests run fast: ``spacing`` between a frame's copies (datasheet
    ~0.2 s), ``alarm_repeat`` (30 s), ``answer_delay`` for PING (< 0.1 s), ``pair_scale``
    multiplies the seconds a PAIR command asks for.
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
        announce: bool = True,
    ) -> None:
        self.link = link
        self.spacing = spacing
        self.alarm_repeat = alarm_repeat
        self.copies = copies
        self.answer_delay = answer_delay
        self.firmware = firmware
        self.pair_scale = pair_scale
        self.announce = announce
        self.answer_pings = True
        self.detectors: dict[int, Detector] = {}
        self.paired: set[int] = set()
        self.joining: list[tuple[int, int]] = []  # (address, model) waiting for pair mode
        self.host_frames: list[Frame] = []
        self.wire_in = bytearray()  # every byte the host sent, for byte-exact checks
        self.hush_all_count = 0
        self.dropped = 0  # frames lost because nobody was reading, or unplugged
        self.slave_path = ""
        self._master = self._slave = -1
        self._seq = 0
        self._pair_until = 0.0
        self._decoder = Decoder()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heard = asyncio.Event()

    @property
    def path(self) -> str:
        return self.link or self.slave_path

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._plug()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
        for frame in self._decoder.feed(data):
            self.host_frames.append(frame)
            self._on_host_frame(frame)
        self._heard.set()

    def _on_host_frame(self, frame: Frame) -> None:
        loop = asyncio.get_running_loop()
        if frame.type == PING and self.answer_pings:
            loop.call_later(self.answer_delay, self._answer_if_plugged, self._master)
        elif frame.type == PAIR and frame.payload:
            self._pair_until = loop.time() + frame.payload[0] * self.pair_scale
            self._admit_joining()
        elif frame.type == HUSH_ALL:
            self.hush_all_count += 1
        elif frame.type == REMOVE:
            self.paired.discard(frame.device)

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

    async def torn(self, frame: Frame, pause: float = 0.05, at: int | None = None) -> None:
        """One frame in two writes with a pause between, as a USB read can split it."""
        data = encode(frame)
        cut = at if at is not None else len(data) // 2
        self.write(data[:cut])
        await asyncio.sleep(pause)
        self.write(data[cut:])

    async def bad_crc(self, frame: Frame) -> None:
        data = bytearray(encode(frame))
        data[-1] ^= 0xFF
        self.write(bytes(data))


# -- standalone --------------------------------------------------------------------------------


async def _demo(rx: ReceiverEmulator, say: Callable[[str], None]) -> None:
    dets = list(rx.detectors.values())
    for det in dets:
        await det.heartbeat()
    if not dets:
        return
    await asyncio.sleep(5)
    say(f"detector {dets[0]}: smoke alarm")
    await dets[0].alarm(150)
    await asyncio.sleep(20)
    say(f"detector {dets[0]}: cleared")
    await dets[0].clear()


async def _main(args: argparse.Namespace) -> None:
    rx = ReceiverEmulator(args.link, spacing=args.spacing, alarm_repeat=args.alarm_repeat)
    for address in args.detector:
        rx.detector(address)
    for address in args.join:
        rx.joining.append((parse_address(address), 1))
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Leave through ``async with`` so the link is removed, not left dangling.
        loop.add_signal_handler(sig, main.cancel)
    async with rx:
        where = f"SRB-433 emulator on {rx.slave_path}" + (f" (link {rx.link})" if rx.link else "")
        print(where, flush=True)
        print(f"detectors: {', '.join(map(str, rx.detectors.values())) or 'none'}", flush=True)
        if args.scenario == "demo":
            await _demo(rx, lambda text: print(text, flush=True))
        while True:
            for det in rx.detectors.values():
                if det.address in rx.paired:
                    await det.heartbeat()
            await asyncio.sleep(args.heartbeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_stubs.srb433", description=__doc__)
    parser.add_argument("--link", help="stable symlink to create for the pty, e.g. /tmp/srb433")
    parser.add_argument("--detector", action="append", default=[], help="paired detector id")
    parser.add_argument("--join", action="append", default=[], help="id joining in pair mode")
    parser.add_argument("--scenario", choices=("idle", "demo"), default="idle")
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between copies")
    parser.add_argument("--alarm-repeat", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=3600.0, help="heartbeat period, s")
    args = parser.parse_args(argv)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
