"""Run the fake BlueZ and its emulated devices on their own event loop in a thread.

Tests and benchmarks drive the code under test with ``asyncio.run`` on the main thread; the
emulated world keeps running beside it (as a real lock would), and every poke at it (a card,
a fault) is marshalled onto its loop with ``call``. Everything started here is stopped by
``stop``: the loop, the fake BlueZ's bus connection, the timers of the devices.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from firmware_stubs.dl_b2 import DLB2
from firmware_stubs.fake_bluez import FakeBlueZ
from firmware_stubs.peripheral import Peripheral
from firmware_stubs.private_bus import ENV_VAR, PrivateBus

T = TypeVar("T")


class EmulatorThread:
    """A FakeBlueZ on ``bus_address`` with DL-B2 locks, served from a background thread."""

    def __init__(self, bus_address: str, **bluez_options: Any) -> None:
        self.bus_address = bus_address
        self._options = bluez_options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.bluez: FakeBlueZ | None = None
        self.locks: dict[str, DLB2] = {}

    def start(self, timeout: float = 10.0) -> EmulatorThread:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-bluez", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("emulator thread did not start")
        self.bluez = FakeBlueZ(self.bus_address, **self._options)
        self.run(self.bluez.start(), timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if self.bluez is not None:
                fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                fut.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout)
            loop.close()

    async def _shutdown(self) -> None:
        assert self.bluez is not None
        for lock in self.locks.values():
            lock.cancel_timers()
        await self.bluez.stop()
        # let cancelled callbacks and transports settle before the loop stops
        await asyncio.sleep(0)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the emulator's loop and wait (bounded) for its result."""
        assert self._loop is not None, "emulator not started"
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Call ``fn(*args)`` on the emulator's loop (where device timers live)."""

        async def invoke() -> T:
            return fn(*args)

        return self.run(invoke(), timeout)

    def add(self, peripheral: Peripheral) -> None:
        assert self.bluez is not None
        bluez = self.bluez
        self.call(bluez.add_peripheral, peripheral)

    def add_lock(self, address: str, key: bytes, **options: Any) -> DLB2:
        lock = DLB2(address, key, **options)
        self.add(lock)
        self.locks[lock.address] = lock
        return lock

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` on the emulator's loop until true; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(0.02)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class BleWorld:
    bus: PrivateBus
    emu: EmulatorThread


@contextlib.contextmanager
def world(**bluez_options: Any) -> Iterator[BleWorld]:
    """A private bus, exported as this process's system bus, with a fake BlueZ serving on it
    (fast adverts by default, so tests do not wait on radio timing)."""
    options = {"advert_interval": 0.05, "stale_seconds": 1.0, **bluez_options}
    old = os.environ.get(ENV_VAR)
    with PrivateBus() as bus:
        os.environ[ENV_VAR] = bus.address
        try:
            with EmulatorThread(bus.address, **options) as emu:
                yield BleWorld(bus, emu)
        finally:
            if old is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = old


async def close_bleak() -> None:
    """Close the BlueZ manager bleak keeps per event loop. It would otherwise hold its D-Bus
    socket until another loop asks for a manager, and leak it at exit; call it at the end of
    every ``asyncio.run`` that used bleak against a private bus."""
    from bleak.backends.bluezdbus import manager as m

    inst = m._global_instances.pop(asyncio.get_running_loop(), None)
    if inst is None:
        return
    # Cancelling the watcher (it would log the closing bus as "lost") also cancels the bus's
    # disconnect future it awaits, so wait for the socket to close by polling instead.
    watcher = inst._bus_watcher_task
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    bus = inst._bus
    if bus is not None:
        bus.disconnect()
        async with asyncio.timeout(5):
            while bus.connected:
                await asyncio.sleep(0.01)
