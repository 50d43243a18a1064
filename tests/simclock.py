"""Simulated time for a whole daemon: hours of an outage in seconds of a test.

``install()`` (called from a ``sitecustomize`` that ``sitecustomize_for`` writes, so it runs
before anything else in the daemon's interpreter) makes ``time.time`` and ``time.monotonic``
run ahead of the real clocks by an offset, and gives ``asyncio.run`` an event loop whose
selector jumps that offset forward instead of sleeping: when no socket is ready, the loop
goes straight to its next timer. Sockets, threads and the broker stay real. Only the waiting
is skipped, so every backoff, TTL and timer in the daemon runs at its configured length.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from pathlib import Path
from typing import Any

_real_time, _real_monotonic = time.time, time.monotonic
_offset = 0.0


def _time() -> float:
    return _real_time() + _offset


def _monotonic() -> float:
    return _real_monotonic() + _offset


_in_threads = 0  # run_in_executor calls not finished: time runs at its real pace meanwhile


def _run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
    global _in_threads
    fut = _real_run_in_executor(self, executor, func, *args)
    _in_threads += 1

    def done(_: Any) -> None:
        global _in_threads
        _in_threads -= 1

    fut.add_done_callback(done)
    return fut


_real_run_in_executor = asyncio.BaseEventLoop.run_in_executor


class WarpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def select(self, timeout: float | None = None) -> list[Any]:
        global _offset
        ready = super().select(0)
        if ready or timeout == 0:
            return list(ready)
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            return list(super().select(None))
        if _in_threads:  # a thread is working for the loop: wait for it in real time
            return list(super().select(min(timeout, 0.005)))
        _offset += timeout  # nothing to do before the next timer: be there now
        return []


class WarpPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(WarpSelector())


def install() -> None:
    # The loop never sleeps now, so a thread waiting for the interpreter lock (a connect in
    # the executor) would wait 5 ms for it by default: whole simulated seconds. Hand it over
    # at once instead.
    sys.setswitchinterval(1e-5)
    asyncio.BaseEventLoop.run_in_executor = _run_in_executor  # type: ignore[method-assign]
    time.time = _time
    time.monotonic = _monotonic
    asyncio.set_event_loop_policy(WarpPolicy())


def sitecustomize_for(where: Path, repo: Path) -> None:
    """Write a ``sitecustomize.py`` into ``where`` (a directory on the daemon's PYTHONPATH)
    that installs simulated time at interpreter start."""
    (where / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(repo)!r})\n"
        "import tests.simclock\ntests.simclock.install()\n"
    )
