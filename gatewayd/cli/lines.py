"""Before a scan opens a line: is it there, is it free? So a scan that cannot work says what
really happened (the daemon holds the port, nothing listens on that TCP port) instead of
"nobody answered, check the wiring". Bus-neutral: a serial port or a host:port. Only looks.
"""

from __future__ import annotations

import os

from gatewayd.cli import client
from gatewayd.cli.i18n import t
from gatewayd.cli.probes import tcp_reachable
from gatewayd.errors import ProbeError


def daemon_bus_on(config_path: str, port: str) -> str | None:
    """The configured bus on serial ``port`` when the daemon runs (it holds that port then)."""
    if not os.path.exists(config_path):
        return None
    from gatewayd.cli.editing import ConfigText, EditError

    try:
        buses = ConfigText(config_path).tables("buses")
    except EditError:
        return None
    real = os.path.realpath(port)
    names = [
        str(b.get("name"))
        for b in buses
        if b.get("port") and os.path.realpath(str(b["port"])) == real
    ]
    if not names:
        return None
    daemon = client.try_connect(config_path, timeout=2)
    if daemon is None:
        return None
    daemon.close()
    return names[0]


def serial_problem(config_path: str, port: str) -> str | None:
    """Why scanning serial ``port`` would mislead: the daemon, or another program, has it."""
    bus = daemon_bus_on(config_path, port)
    if bus is not None:
        return t("line_daemon_holds", port=port, bus=bus)
    import fcntl

    try:
        fd = os.open(port, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        return t("line_cannot_open", port=port, reason=exc.strerror or exc)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as pyserial's exclusive=True takes it
    except BlockingIOError:
        return t("line_busy", port=port)
    finally:
        os.close(fd)  # closing drops the lock
    return None


def tcp_problem(host: str, port: int) -> str | None:
    """Why scanning Modbus TCP at ``host:port`` would mislead: nothing listens, or no answer."""
    try:
        tcp_reachable(host, port)
    except ProbeError as exc:
        if "refused" in str(exc).lower():
            return t("line_refused", host=host, port=port)
        return t("line_unreachable", host=host, port=port, reason=exc)
    return None
