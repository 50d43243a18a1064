"""The CLI's end of the control socket (gatewayd.control): blocking, line-delimited JSON.

Every failure to reach the daemon becomes a ``Fail`` with exit code 4 and one line saying
what to do; an answer of ``{"ok": false}`` becomes a ``Fail`` with the exit code its ``code``
maps to (``EXIT_BY_CODE``; 1 for the rest).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from gatewayd.cli.common import (
    DEFAULT_DATA_DIR,
    FAILED,
    NO_DAEMON,
    NOT_FOUND,
    ConfigDenied,
    Fail,
    data_dir_of,
    fail,
    group_of,
)
from gatewayd.cli.i18n import refused, t

TIMEOUT = 20.0
#: A refusal's code (gatewayd.control.wire) -> the exit code scripts see: no such alarm or
#: device is "nothing found"; too many clients is "not reachable" (try again).
EXIT_BY_CODE = {"not_found": NOT_FOUND, "busy": NO_DAEMON}


class NotRunning(Fail):
    """Nothing listens at the socket (none there, or one left by a killed daemon)."""


def locate(config_path: str) -> str | None:
    """The daemon's socket for this config. A config this user may not read (the installer's
    login, not in the gatewayd group) still leaves the service's usual places to try: the
    socket itself then says whether this user may talk to the daemon (exit 4 either way)."""
    from gatewayd import control

    try:
        data_dir = data_dir_of(config_path)
    except ConfigDenied as exc:
        found = control.find_socket(DEFAULT_DATA_DIR)
        if found is None:
            fail(exc.message, NO_DAEMON)
        return found
    return control.find_socket(data_dir)


def _where(config_path: str) -> str:
    from gatewayd import control

    return " or ".join(control.candidates(data_dir_of(config_path)))


class Client:
    """One connection to the daemon."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        try:
            accepted = _connect(self.sock, path, timeout)
        except PermissionError:
            self.sock.close()
            fail(t("socket_denied", path=path, group=group_of(path)), NO_DAEMON)
        except OSError:
            self.sock.close()
            raise NotRunning(t("no_daemon", where=path), NO_DAEMON) from None
        if not accepted:
            self.sock.close()
            fail(t("client_busy", path=path), NO_DAEMON)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: Mapping[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            # Refused before it read anything (busy): its one line is waiting to be read.
            line = self._line(1.0)
            if line:
                with contextlib.suppress(ValueError):
                    self._refused(json.loads(line))
            fail(t("client_hung_up", path=self.path, reason=exc.strerror or exc), NO_DAEMON)

    def _line(self, timeout: float | None) -> bytes | None:
        """One line (b"" once closed); None when ``timeout`` passed first. A plain buffer,
        because a socket file object is unusable after its first timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                fail(t("client_hung_up", path=self.path, reason=exc.strerror or exc), NO_DAEMON)
            if not chunk:
                return b""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def receive(self, timeout: float | None) -> dict[str, Any] | None:
        """The next line as an object; None when the daemon closed the connection."""
        line = self._line(timeout)
        if line is None:
            fail(t("client_no_answer", path=self.path, seconds=f"{timeout:.0f}"))
        if not line:
            return None
        obj = json.loads(line)
        return obj if isinstance(obj, dict) else {}

    def poll(self, timeout: float) -> dict[str, Any] | None:
        """The next line within ``timeout`` seconds, else None (also None once closed)."""
        line = self._line(max(timeout, 0.0))
        if not line:
            return None
        obj = json.loads(line)
        return obj if isinstance(obj, dict) else {}

    def request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request; its answer, or Fail with the daemon's error."""
        self.send(request)
        answer = self.receive(self.timeout)
        if answer is None:
            fail(t("client_closed", path=self.path), NO_DAEMON)
        if not answer.get("ok"):
            self._refused(answer)
        return answer

    def _refused(self, answer: Any) -> None:
        """Fail with a refusal's one line and the exit code of its code; nothing otherwise."""
        if not isinstance(answer, dict) or answer.get("ok") is not False:
            return
        error = str(answer.get("error", "refused"))
        if error == "permission denied":
            fail(t("socket_denied", path=self.path, group=group_of(self.path)), NO_DAEMON)
        fail(refused(error), EXIT_BY_CODE.get(str(answer.get("code")), FAILED))

    def stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Send a streaming request; yield each line after the first answer. The socket
        timeout is lifted: a quiet house sends nothing for hours."""
        self.request(request)
        while (obj := self.receive(None)) is not None:
            yield obj


def _connect(sock: socket.socket, path: str, timeout: float) -> bool:
    """Connect, waiting while the daemon's accept queue is full: a Unix socket then answers
    EAGAIN at once (it does not wait like TCP), which means "busy", not "not running". False
    when it stayed full for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def connect(config_path: str, timeout: float = TIMEOUT) -> Client:
    """A client of the daemon for this config, or Fail (exit 4) when it is not running."""
    path = locate(config_path)
    if path is None:
        fail(t("no_daemon", where=_where(config_path)), NO_DAEMON)
    return Client(path, timeout)


def try_connect(config_path: str, timeout: float = TIMEOUT) -> Client | None:
    """A client when the daemon runs and lets us in; None when there is no socket."""
    path = locate(config_path)
    if path is None:
        return None
    try:
        return Client(path, timeout)
    except NotRunning:
        return None
