"""systemd's notify protocol (READY, STATUS, WATCHDOG, STOPPING) over $NOTIFY_SOCKET.

A plain datagram to a Unix socket: no dependency. The watchdog is fed from a coroutine on the
daemon's own event loop and only while ``healthy()`` says so, so a blocked loop or a dead
supervisor stops the feeding and systemd restarts the daemon. The same coroutine keeps the
STATUS= line current (the broker coming and going, alarms, fire mode, sickness and recovery).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from gatewayd import ticks

log = logging.getLogger("gatewayd.systemd")


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd; False when not run by systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec, or None when the watchdog is off for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


#: How often the STATUS= shown by `systemctl status` is brought up to date (at most).
STATUS_PERIOD = 2.0


def enabled() -> bool:
    return bool(os.environ.get("NOTIFY_SOCKET"))


async def report(
    healthy: Callable[[], str | None], status: Callable[[], str], watchdog: float | None
) -> None:
    """Keep systemd told, from the daemon's own loop: WATCHDOG=1 every ``watchdog`` seconds
    while ``healthy()`` returns None (else a reason), and STATUS= whenever the status line
    changes: "unhealthy: <reason>" while sick, the daemon's line (``status()``: broker,
    alarms, fire mode) otherwise, so `systemctl status` never shows a state that is over."""
    period = min(watchdog, STATUS_PERIOD) if watchdog else STATUS_PERIOD
    shown = status()  # what READY=1 carried
    was_sick = False
    while True:
        await ticks.tick(period)
        reason = healthy()
        line = f"unhealthy: {reason}" if reason is not None else status()
        if line != shown:
            notify(f"STATUS={line}")
            shown = line
        if reason is None:
            if watchdog:
                notify("WATCHDOG=1")
            if was_sick:
                log.info("healthy again")
        elif not was_sick:
            log.error("watchdog not fed: %s", reason)
        was_sick = reason is not None
