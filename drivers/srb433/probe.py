"""A short, safe talk with an SRB-433 receiver for the CLI on site: is it on this port (PING),
and pair mode with the joins as they come. Only asks; never changes a detector.

Used by `gatewayd scan serial`, `pair smoke`, `test` and `check --all`; blocking (the CLI is
not the daemon), with short timeouts.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from drivers.srb433.codec import Decoder, Frame, encode
from drivers.srb433.driver import PAIR, PAIRED, PING, RECEIVER, STATUS
from gatewayd.cli.i18n import t
from gatewayd.errors import ProbeError


@dataclass(frozen=True)
class Receiver:
    port: str
    firmware: str
    paired: int


class ReceiverPort:
    """A serial port opened to talk SRB-433 frames: ping it, or put it in pair mode."""

    def __init__(self, port: str, baudrate: int = 9600) -> None:
        import serial

        self.port = port
        try:
            self.serial = serial.Serial(port, baudrate, timeout=0, exclusive=True)
        except (OSError, ValueError) as exc:
            text = str(exc)
            if "exclusively lock" in text or "Resource temporarily unavailable" in text:
                raise ProbeError(f"{port}: busy (held by another program: the daemon?)") from None
            if isinstance(exc, FileNotFoundError) or "No such file" in text:
                raise ProbeError(f"{port}: no such port") from None
            if "Inappropriate ioctl" in text:
                raise ProbeError(f"{port}: not a serial port") from None
            raise ProbeError(f"{port}: cannot open ({text})") from None
        self.decoder = Decoder()
        self._seq = 0

    def close(self) -> None:
        self.serial.close()

    def __enter__(self) -> ReceiverPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, type_: int, payload: bytes = b"") -> None:
        self._seq = (self._seq + 1) & 0xFF
        self.serial.write(encode(Frame(type_, RECEIVER, self._seq, payload)))

    def frames(self, seconds: float) -> Iterator[Frame]:
        """Frames from the receiver itself (DEVICE 0) for ``seconds``."""
        deadline = time.monotonic() + seconds
        fd = self.serial.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ProbeError(f"{self.port}: read failed ({exc.strerror})") from None
            if not data:
                raise ProbeError(f"{self.port}: the device went away")
            for frame in self.decoder.feed(data):
                if frame.device == RECEIVER:
                    yield frame

    def ping(self, timeout: float = 0.5) -> Receiver | None:
        self.serial.reset_input_buffer()
        self.send(PING)
        for frame in self.frames(timeout):
            if frame.type == STATUS and len(frame.payload) >= 3:
                fw = int.from_bytes(frame.payload[:2], "big")
                return Receiver(self.port, f"{fw >> 8}.{fw & 0xFF}", frame.payload[2])
        return None

    def pair(
        self,
        seconds: int,
        on_join: Callable[[str, int], None],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Pair mode for ``seconds``; ``on_join(address, model)`` for each detector, and
        ``tick()`` about once a second (a countdown)."""
        self.send(PAIR, bytes((seconds,)))
        deadline = time.monotonic() + seconds + 0.5
        while (left := deadline - time.monotonic()) > 0:
            tick()
            for frame in self.frames(min(left, 1.0)):
                if frame.type == PAIRED and len(frame.payload) >= 5:
                    on_join(f"{int.from_bytes(frame.payload[:4], 'big'):08X}", frame.payload[4])


def find_receiver(port: str, baudrate: int = 9600, timeout: float = 0.5) -> Receiver | None:
    with ReceiverPort(port, baudrate) as rp:
        # One retry: a noise burst can eat one answer (the driver does the same).
        return rp.ping(timeout) or rp.ping(timeout)


def self_test(dev: Any, bus: Any) -> tuple[bool, dict[str, Any]]:
    """`gatewayd test DETECTOR` without the daemon: the receiver answers a PING."""
    port = bus.settings["port"]
    rx = find_receiver(port, bus.settings.get("baudrate", 9600))
    if rx is None:
        return False, {"receiver": t("selftest_rx_silent", port=port)}
    return True, {
        "receiver": t("selftest_rx", port=port, firmware=rx.firmware, paired=rx.paired),
        "detector": t(
            "selftest_detector",
            address=dev.settings["address"],
            room=dev.settings.get("room") or "-",
        ),
        "last seen": t("selftest_last_seen"),
    }
