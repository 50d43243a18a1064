"""The SRB-433's serial port: open it, read and write without blocking, notice it vanished.

The only module of the driver that touches pyserial (imported when a port is opened, so
``gatewayd --help`` never pays for it). It must never block the event loop: the descriptor is
non-blocking and reads/writes go straight to it; pyserial is used for what it is good at,
configuring the line (termios: 9600 8N1, no flow control) and taking the exclusive lock.
Every OS or pyserial error is turned into ``TransientError`` here, once.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Protocol

from gatewayd.errors import TransientError

READ_CHUNK = 4096


class Transport(Protocol):
    """What the driver needs from a byte pipe to the receiver."""

    def open(self) -> int:
        """Open the link and return a non-blocking descriptor to watch for reading."""

    def read(self) -> bytes:
        """Whatever is waiting (maybe nothing). Raises ``TransientError`` when the link is gone."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` whole or raise ``TransientError``."""

    def vanished(self) -> bool:
        """True when the device behind the open descriptor is no longer at the configured path."""

    def close(self) -> None: ...


class SerialTransport:
    """A serial port opened by path, e.g. ``/dev/serial/by-id/usb-…`` or ``/dev/ttyUSB0``."""

    def __init__(self, port: str, baudrate: int = 9600) -> None:
        self.port = port
        self.baudrate = baudrate
        self._serial: Any = None
        self._fd = -1
        self._rdev = -1

    def _lost(self, detail: str) -> TransientError:
        return TransientError(f"serial {self.port}", detail)

    def open(self) -> int:
        import serial

        try:
            self._serial = serial.Serial(
                port=self.port,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                # A second reader on the same port would steal half the frames.
                exclusive=True,
            )
            self._fd = self._serial.fileno()
            self._rdev = os.fstat(self._fd).st_rdev
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            self.close()
            raise self._lost(f"cannot open: {exc}") from exc
        return int(self._fd)

    def read(self) -> bytes:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise self._lost(f"read failed: {exc.strerror or exc}") from exc
        if not data:
            # Readable yet empty: the USB device went away (or the pty's other end closed).
            raise self._lost("end of file (unplugged?)")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                # Host frames are a dozen bytes and the tty queue holds kilobytes, so a short
                # write only happens when the receiver stopped draining: treat it as lost.
                view = view[os.write(self._fd, view) :]
        except BlockingIOError as exc:
            raise self._lost("output queue full: receiver not reading") from exc
        except OSError as exc:
            raise self._lost(f"write failed: {exc.strerror or exc}") from exc

    def vanished(self) -> bool:
        try:
            return os.stat(self.port).st_rdev != self._rdev
        except OSError:
            return True

    def close(self) -> None:
        ser, self._serial, self._fd = self._serial, None, -1
        if ser is not None:
            # Closing a port that was yanked can fail; it is closed either way.
            with contextlib.suppress(OSError):
                ser.close()
