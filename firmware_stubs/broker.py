"""A real mosquitto on a free loopback port, for tests, the demo and the benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from firmware_stubs.lifetime import tied_to_parent


def free_port() -> int:
    with socket.socket() as s:
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
