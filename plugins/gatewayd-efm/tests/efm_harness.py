"""The EFM-4 emulator on the piles' RS-485 pty line (or Modbus TCP), a real modbus driver
over it with the electrical rule in the loop (``tests.charger_harness``): what tripped, what
was raised, what a person's reset does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd_efm_stubs.efm4 import Efm4
from tests.charger_harness import RulesLoop, running

FAST = {"fast_seconds": 0.1, "slow_seconds": 1.0}


async def until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def on_line(
    body: Callable[[EbcEmulator, dict[str, Any]], Awaitable[None]],
    detectors: list[Efm4],
    transport: str,
    piles: list[Pile] | None = None,
) -> None:
    """Run ``body(emulator, bus settings)`` with ``detectors`` (and ``piles``) on one line:
    an RTU pty at 9600 baud, or Modbus TCP."""

    async def main() -> None:
        async with EbcEmulator(piles or []) as emu:
            for efm in detectors:
                emu.piles[efm.unit] = efm  # type: ignore[assignment]  # any slave rides the line
            if transport == "tcp":
                bus = {"host": "127.0.0.1", "tcp_port": await emu.serve_tcp(), **FAST}
            else:
                bus = {"port": emu.open_rtu(), "baudrate": 9600, **FAST}
            await body(emu, bus)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def house(
    loop: RulesLoop, bus: dict[str, Any], piles: dict[str, int], efms: dict[str, int]
) -> AsyncIterator[ModbusDriver]:
    """The modbus driver for ``piles`` and ``efms`` ({device id: unit}) on ``bus``; the rules
    see the devices (the electrical rule asks each event's device its kind)."""
    extra = {dev: ("electrical", unit) for dev, unit in efms.items()}
    async with running(loop, bus, piles, extra=extra) as driver:
        loop.world.devices = driver.devices
        yield driver
