"""A private, throw-away D-Bus "system" bus for emulators and tests.

bleak's BlueZ backend talks to the system bus; dbus-fast reads ``DBUS_SYSTEM_BUS_ADDRESS``
whenever a bus is created, so pointing that variable at a daemon started here lets the real
backend meet a fake BlueZ without root, without a Bluetooth adapter and without touching the
machine's own bus. The daemon's policy allows everything: it only ever serves this process tree.
"""

from __future__ import annotations

import selectors
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from firmware_stubs.lifetime import tied_to_parent

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_destination="*"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

DBUS_DAEMON = "dbus-daemon"
ENV_VAR = "DBUS_SYSTEM_BUS_ADDRESS"


class PrivateBus:
    """A ``dbus-daemon`` in a temporary directory; ``address`` is set once started.

    Use as a context manager. ``stop`` kills only the daemon this object started.
    """

    def __init__(self, start_timeout: float = 10.0) -> None:
        self.address = ""
        self._start_timeout = start_timeout
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        daemon = shutil.which(DBUS_DAEMON) or "/usr/bin/dbus-daemon"
        # A short prefix keeps the socket path under the 108-byte sun_path limit.
        self._dir = tempfile.TemporaryDirectory(prefix="gwbus-")
        socket = Path(self._dir.name, "bus")
        config = Path(self._dir.name, "bus.conf")
        config.write_text(_CONFIG.format(socket=socket), encoding="utf-8")
        self._proc = subprocess.Popen(
            tied_to_parent(
                [daemon, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address"]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C for the demo must not end the bus before its users
        )
        assert self._proc.stdout is not None
        try:
            line = self._read_address_line()
        except BaseException:
            self.stop()
            raise
        self.address = line
        return line

    def _read_address_line(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        # The daemon prints its address once it listens; a bounded wait keeps a broken
        # daemon from hanging a test run.
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            if not sel.select(self._start_timeout):
                raise RuntimeError(f"dbus-daemon printed no address in {self._start_timeout} s")
        line = self._proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"dbus-daemon exited (code {self._proc.poll()})")
        return line

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def environ(self) -> dict[str, str]:
        """The variables a client process needs to use this bus as its system bus."""
        return {ENV_VAR: self.address}

    def __enter__(self) -> PrivateBus:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
