"""Shared pieces for tests that run bleak's real BlueZ backend against the fake BlueZ: the
``ble_world`` fixture (a private D-Bus as the system bus, the emulator thread for DL-B2 locks),
a runner that leaves no bleak state behind when a test's event loop ends, and a driver factory
that validates its config as ``gateway.toml`` would.

Import the fixture into a test module: ``from tests.ble_fixtures import ble_world``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware_stubs.harness import BleWorld, close_bleak, world

__all__ = ["BleWorld", "ble_world", "key_file", "kill_while_connected", "make_driver", "run"]
from gatewayd.driver import BusConfig, DeviceConfig, DriverContext
from gatewayd.schema import validate

T = TypeVar("T")

EVENTS_UUID = "5a1e0003-7c1a-4d2b-9e3f-a0b1c2d3e4f5"  # the datasheet's, not the driver's
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ADDRESS = "C0:FF:EE:00:00:01"


@pytest.fixture
def ble_world() -> Iterator[BleWorld]:
    with world() as w:
        yield w


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """``asyncio.run`` with a bound, closing bleak's per-loop state afterwards."""

    async def main() -> T:
        try:
            async with asyncio.timeout(timeout):
                return await coro
        finally:
            await close_bleak()

    return asyncio.run(main())


def key_file(tmp_path: Path, key: bytes = KEY, name: str = "door.key") -> str:
    path = tmp_path / name
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return str(path)


def make_driver(
    ctx: DriverContext,
    devices: dict[str, dict[str, Any]],
    **bus_settings: Any,
) -> Any:
    """A BleDriver from raw config tables, validated as ``gateway.toml`` would be."""
    from drivers.ble.driver import BleDriver
    from drivers.ble.family import DoorFamily

    bus = BusConfig(
        "ble", "ble", validate(bus_settings, BleDriver.bus_schema, "test.toml", "buses[0]")
    )
    configs = [
        DeviceConfig(
            dev_id,
            "door_lock",
            "ble",
            validate(
                table, DoorFamily.schema(), "test.toml", f"devices.{dev_id}"
            ),
        )
        for dev_id, table in devices.items()
    ]
    return BleDriver(bus, configs, ctx)


# A central that connects with bare bleak, subscribes to EVENTS and dies by SIGKILL while it
# holds the link: no Disconnect, no StopNotify, its D-Bus connection simply vanishes.
_KILLED_CENTRAL = """
import asyncio, os, signal, sys
from bleak import BleakClient, BleakScanner

async def main():
    device = await BleakScanner.find_device_by_address(sys.argv[1], timeout=10)
    assert device is not None, "lock not seen"
    client = BleakClient(device, timeout=10)
    await client.connect()
    await client.start_notify(sys.argv[2], lambda *_: None)
    print("connected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def kill_while_connected(address: str, events_uuid: str = EVENTS_UUID) -> None:
    """Connect to the lock at ``address`` from another process (on the private bus this
    process uses as its system bus) and SIGKILL that process while it holds the link, as a
    gateway killed with ``kill -9`` would leave it."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_CENTRAL, address, events_uuid],
        capture_output=True,
        env=dict(os.environ),
        timeout=30,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")
    assert proc.stdout.strip() == b"connected"
