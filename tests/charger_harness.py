"""A minimal stand-in for the daemon runtime around one modbus driver, for tests and benches:
events go to the rules, the rules' actions go to ``driver.execute``, alarms into the world.

It records everything (it is a ``RecordingContext``) so a test can assert what a user would
see: which relay opened, which events and alarms were raised, which actions were refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd.alarms import AlarmBook
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import GatewayError
from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from rules.engine import ClearAlarm, Engine, Rule, World
from tests.fakes import RecordingContext


class RulesLoop(RecordingContext):
    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        super().__init__()
        self.engine = Engine(list(rules))
        self.book = AlarmBook("gw-test", self.engine.catalogue())
        self.world = World("gw-test", {}, alarms=self.book.alarms)
        self.driver: ModbusDriver | None = None
        self.results: list[tuple[Action, Any]] = []
        self.alarms: list[Alarm] = []  # every raise, as raised (severity from its type)
        self._tasks: set[asyncio.Task[None]] = set()

    def publish_state(self, device: str, state: Any) -> None:
        super().publish_state(device, state)
        self.world.states.setdefault(device, {}).update(state)

    def emit(self, event: Event) -> None:
        super().emit(event)
        self.world.now = time.time()
        self.world.fire_mode = self.book.fire_mode
        out = self.engine.handle(event, self.world)
        for change in out.alarms:
            if isinstance(change, ClearAlarm):
                self.book.clear(change.device, change.type, change.part)
                continue
            self.book.raise_(change.device, change.type, change.data, change.part)
            key = alarm_id(change.device, change.type)
            severity = self.book.catalogue[change.type].severity
            self.alarms.append(
                Alarm(key, change.device, change.type, severity, self.world.now, data=change.data)
            )
        for action in out.actions:
            task = asyncio.get_running_loop().create_task(self._execute(action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, action: Action) -> None:
        assert self.driver is not None
        try:
            self.results.append((action, await self.driver.execute(action)))
        except GatewayError as exc:
            self.results.append((action, exc))

    async def ticks(self, period: float = 0.2) -> None:
        while True:
            await asyncio.sleep(period)
            self.emit(Event("gw-test", TICK))


@contextlib.asynccontextmanager
async def running(
    loop: RulesLoop,
    bus: dict[str, Any],
    units: dict[str, int],
    device_settings: dict[str, Any] | None = None,
    extra: dict[str, tuple[str, int]] | None = None,
) -> AsyncIterator[ModbusDriver]:
    """Run a ModbusDriver for ``units`` ({device id: unit}) on ``bus`` until the block ends;
    ``extra`` adds devices of other families on the same bus ({device id: (kind, unit)})."""
    bus_cfg = BusConfig("rs485", "modbus", bus)
    devices = [
        DeviceConfig(d, "charger", "rs485", {"unit": u, **(device_settings or {})})
        for d, u in units.items()
    ]
    devices += [DeviceConfig(d, k, "rs485", {"unit": u}) for d, (k, u) in (extra or {}).items()]
    driver = ModbusDriver(bus_cfg, devices, loop)
    loop.driver = driver
    tasks = [
        asyncio.create_task(driver.run(), name="driver"),
        asyncio.create_task(loop.ticks(), name="ticks"),
    ]
    try:
        yield driver
    finally:
        for t in [*tasks, *loop._tasks]:
            t.cancel()
        for t in [*tasks, *list(loop._tasks)]:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def on_emulator(
    body: Callable[[EbcEmulator, dict[str, Any]], Awaitable[None]],
    piles: list[Pile],
    transport: str,
    settings: dict[str, Any],
) -> None:
    """Run ``body(emulator, bus settings)`` with ``piles`` served over Modbus TCP or on an
    RTU pty line at 9600 baud; ``settings`` join the bus's (poll periods and the like)."""

    async def main() -> None:
        async with EbcEmulator(piles) as emu:
            if transport == "tcp":
                bus = {"host": "127.0.0.1", "tcp_port": await emu.serve_tcp(), **settings}
            else:
                bus = {"port": emu.open_rtu(), "baudrate": 9600, **settings}
            await body(emu, bus)

    asyncio.run(main())
