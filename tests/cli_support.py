"""Helpers for the CLI and control-socket tests: run `gatewayd` as an installer would (a real
subprocess, or click's runner), an SRB-433 emulator on its own thread, and a daemon that
serves the control socket.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from firmware_stubs.srb433 import ReceiverEmulator
from tests.harness import REPO, Daemon, wait_until

DETECTOR = "1A2B3C4D"


def gatewayd(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m gatewayd ARGS` in a subprocess, as an installer would type it."""
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr, asserted to be one line with a ✗ and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("✗ "), result.stderr
    return lines[0]


class EmulatorThread:
    """An SRB-433 receiver emulator on its own event loop, scriptable from sync tests."""

    def __init__(self, link: Path, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.rx = ReceiverEmulator(str(link), spacing=0.02, **options)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.rx.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def do(self, fn: Any, *args: Any) -> Any:
        async def invoke() -> Any:
            return fn(*args)

        return self.call(invoke())

    def close(self) -> None:
        self.call(self.rx.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ControlDaemon(Daemon):
    """The real `gatewayd run`, ready once its control socket is up."""

    def start(self, wait_ready: bool = True) -> None:
        super().start(wait_ready)
        if wait_ready:
            wait_until(lambda: "control socket on" in self.output(), 15.0, "the control socket")
