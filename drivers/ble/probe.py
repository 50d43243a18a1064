"""Short, safe talks with DL-B2 locks for the CLI on site: the lock's status, asked through the
real driver run just long enough (never an unlock), and bleak's BlueZ clean-up after a scan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from gatewayd.cli.i18n import t
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import DeviceError, DriverMissing, GatewayError, ProbeError
from gatewayd.model import Action, Event


class QuietContext:
    """The DriverContext of a driver run for one test: it keeps state, reports nothing."""

    def __init__(self, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.log = logging.getLogger("gatewayd.cli.test")
        self.states: dict[str, dict[str, Any]] = {}

    def emit(self, event: Event) -> None:
        pass

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.states.setdefault(device, {}).update(state)

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        pass


def lock_status(dev: DeviceConfig, bus: BusConfig, gateway_id: str) -> dict[str, Any]:
    """The real BLE driver, run just long enough to ask the lock for its status."""
    try:
        from drivers.ble.driver import BleDriver
    except ImportError as exc:
        raise DriverMissing(f"the BLE driver is not installed ({exc.name})") from None

    address = dev.settings["address"]
    patience = float(bus.settings.get("scan_seconds", 10.0)) + 5.0

    async def ask() -> dict[str, Any]:
        driver = BleDriver(bus, [dev], QuietContext(gateway_id))
        task = asyncio.create_task(driver.run(), name="ble-test")
        problem = "no answer"
        try:
            async with asyncio.timeout(patience):
                while not task.done():
                    try:
                        return dict(
                            await driver.execute(Action(dev.id, "status", {}, origin="cli:test"))
                        )
                    except DeviceError as exc:
                        if exc.code == "bad_mac":  # it answered: the key is wrong, not the range
                            raise ProbeError(t("ble_bad_key", address=address)) from None
                        problem = str(exc)
                        await asyncio.sleep(0.5)
                    except GatewayError as exc:  # not seen or not connected yet: try again
                        problem = str(exc)
                        await asyncio.sleep(0.5)
        except TimeoutError:
            pass
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await close_bleak()
        raise ProbeError(t("ble_no_answer", address=address, problem=problem))

    return asyncio.run(ask())


async def close_bleak() -> None:
    """bleak keeps a BlueZ manager per event loop; close its D-Bus connection with the loop."""
    try:
        from bleak.backends.bluezdbus import manager
    except ImportError:
        return
    instances = getattr(manager, "_global_instances", {})
    inst = instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(inst, "_bus", None)
    watcher = getattr(inst, "_bus_watcher_task", None)
    if watcher is not None:
        watcher.cancel()
    if bus is not None:
        bus.disconnect()
