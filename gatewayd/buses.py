"""The buses the daemon runs: one supervised driver per ``[[buses]]`` entry.

``Buses`` starts each bus's driver under a ``Supervised`` (restarts with backoff), restarts
only the buses a reload changed (a receiver reopened for nothing would miss radio frames), and
starts a changed bus only once its old driver has let go of the port. ``DriverPort`` is the
``DriverContext`` a driver gets: its one way into the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from gatewayd import plugins
from gatewayd.config import Config
from gatewayd.driver import BusConfig, Driver
from gatewayd.model import Event
from gatewayd.supervisor import Supervised

STOP_TIMEOUT = 5.0  # s the drivers get to let go of their ports on shutdown


class Runtime(Protocol):
    """What a driver's events and state go to (the ``Gateway``)."""

    config: Config

    def handle_event(self, event: Event) -> None: ...

    def set_state(self, device: str, state: Mapping[str, Any]) -> None: ...

    def telemetry(self, device: str, values: Mapping[str, Any]) -> None: ...


class DriverPort:
    """The DriverContext handed to one driver: its way into the runtime."""

    def __init__(self, runtime: Runtime, bus: str) -> None:
        self.gateway_id = runtime.config.gateway_id
        self.log = logging.getLogger(f"gatewayd.bus.{bus}")
        self._runtime = runtime

    def emit(self, event: Event) -> None:
        self._runtime.handle_event(event)

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self._runtime.set_state(device, state)

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        self._runtime.telemetry(device, values)


class Buses:
    """``failed(bus, reason, restarts)`` is told each time a driver fails (and is restarted)."""

    def __init__(self, runtime: Runtime, failed: Callable[[str, str, int], None]) -> None:
        self.runtime = runtime
        self.failed = failed
        self.supervised: dict[str, Supervised] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None

    def start(self, tg: asyncio.TaskGroup, config: Config, skip: Collection[str] = ()) -> None:
        """Start every bus of ``config`` but those in ``skip`` (already running)."""
        self._tg = tg
        for bus in config.buses:
            if bus.name in skip:
                continue
            devices = list(config.devices_on(bus.name))
            sup = Supervised(bus.name, self._factory(bus, devices), self.failed)
            self.supervised[bus.name] = sup
            self._tasks[bus.name] = tg.create_task(sup.run(), name=f"bus:{bus.name}")

    def reload(self, old: Config, new: Config) -> tuple[int, Any]:
        """Stop the buses whose settings or devices changed; returns how many and a coroutine
        that starts them anew once their old drivers have ended (the caller spawns it)."""
        same = {b.name for b in new.buses if _bus_of(new, b.name) == _bus_of(old, b.name)}
        stale = [self._tasks.pop(n) for n in [n for n in self._tasks if n not in same]]
        for task in stale:
            task.cancel()
            self.supervised.pop(task.get_name().removeprefix("bus:"), None)
        return len(new.buses) - len(same), self._restart(stale, new, same)

    async def _restart(
        self, stale: list[asyncio.Task[None]], config: Config, skip: Collection[str]
    ) -> None:
        """A new driver opening a port the old one still holds would fail and cry offline."""
        await asyncio.gather(*stale, return_exceptions=True)
        if self.runtime.config is config and self._tg is not None:  # not overtaken
            self.start(self._tg, config, skip=skip)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Cancel every driver and wait (at most ``timeout``) until they have let go: what
        they say on the way out (a lock disconnected) goes before the gateway's farewell."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def health(self) -> str | None:
        """None while every bus's supervisor runs, else which has ended."""
        for name, task in self._tasks.items():
            if task.done():
                return f"supervisor of bus {name} has ended"
        return None

    def driver_of(self, device_id: str) -> tuple[str, Driver | None] | None:
        """The device's bus and its running driver (None while it restarts); None for a
        device not configured."""
        device = self.runtime.config.device(device_id)
        if device is None:
            return None
        sup = self.supervised.get(device.bus)
        return device.bus, sup.driver if sup is not None else None

    def _factory(self, bus: BusConfig, devices: list[Any]) -> Callable[[], Driver]:
        cls = plugins.load_driver(bus.driver)
        return lambda: cls(bus, devices, DriverPort(self.runtime, bus.name))


def _bus_of(config: Config, name: str) -> tuple[Any, ...] | None:
    """A bus's settings and its devices: what its driver was built from."""
    bus = next((b for b in config.buses if b.name == name), None)
    return None if bus is None else (bus, config.devices_on(name))
