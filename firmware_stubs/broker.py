"""A real mosquitto on a free loopback port, for tests, the demo and the benchmarks."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from firmware_stubs.lifetime import tied_to_parent


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (32768 on Linux by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A server stopped and started
    again on its port (a killed broker or cluster node) must find it free: one from the
    ephemeral range can meanwhile become the local end of any outgoing connection (a cluster
    node then died with "address already in use"). Never the same port twice per process."""
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # that range is full: any free port will do
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_path() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on 127.0.0.1; stop() and start() keep the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # mosquitto queues at most 1 000 messages per subscriber by default and silently drops
        # the rest: a test's probe on a busy machine would miss what the gateway delivered.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"max_queued_messages 0\n{extra_conf}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as log:
            # Its own session: a Ctrl-C meant for the demo or a test must not stop the broker
            # before the gateway that talks to it.
            self.proc = subprocess.Popen(
                tied_to_parent([mosquitto_path(), "-c", str(self.conf)]),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.listening():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not start on port {self.port}")
            time.sleep(0.01)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"
