"""systemd's notify protocol (READY, STATUS, WATCHDOG, STOPPING) over $NOTIFY_SOCKET.

A plain datagram to a Unix socket: no dependency. The watchdog is fed from a coroutine on the
daemon's own event loop and only while ``healthy()`` says so, so a blocked loop or a dead
supervisor stops the feeding and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

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


async def feed_watchdog(interval: float, healthy: Callable[[], str | None]) -> None:
    """Send WATCHDOG=1 every ``interval`` while ``healthy()`` returns None (else a reason)."""
    was_sick = False
    while True:
        await asyncio.sleep(interval)
        reason = healthy()
        if reason is None:
            notify("WATCHDOG=1")
            was_sick = False
        elif not was_sick:
            log.error("watchdog not fed: %s", reason)
            notify(f"STATUS=unhealthy: {reason}")
            was_sick = True
