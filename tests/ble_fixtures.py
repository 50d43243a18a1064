"""Shared pieces for tests that run bleak's real BlueZ backend against the fake BlueZ: the
``ble_world`` fixture (a private D-Bus as the system bus, the emulator thread for DL-B2 locks),
a runner that leaves no bleak state behind when a test's event loop ends, and a driver factory
that validates its config as ``gateway.toml`` would.

Import the fixture into a test module: ``from tests.ble_fixtures import ble_world``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware_stubs.harness import BleWorld, close_bleak, world

__all__ = ["BleWorld", "ble_world", "key_file", "make_driver", "run"]
from gatewayd.driver import BusConfig, DeviceConfig, DriverContext
from gatewayd.schema import validate

T = TypeVar("T")

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

    bus = BusConfig(
        "ble", "ble", validate(bus_settings, BleDriver.bus_schema, "test.toml", "buses[0]")
    )
    configs = [
        DeviceConfig(
            dev_id,
            "door_lock",
            "ble",
            validate(
                table, BleDriver.device_schemas["door_lock"], "test.toml", f"devices.{dev_id}"
            ),
        )
        for dev_id, table in devices.items()
    ]
    return BleDriver(bus, configs, ctx)
