"""`gatewayd check` for a Bluetooth bus: offline, whether bleak's D-Bus library runs compiled;
with ``--all``, whether the adapter is there and each lock is connected (the daemon's view) or
how to check it (`gatewayd test`). Only asks. ``BleDriver.check_host`` and
``BleDriver.check_online`` call these.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from gatewayd.cli.i18n import t
from gatewayd.driver import BusConfig, Check, DeviceConfig, Seen


def check_host() -> Iterator[Check]:
    """bleak talks to BlueZ through dbus-fast; without its compiled part (no wheel for 32-bit
    ARM, and no compiler when pip built it) every D-Bus message is parsed in pure Python."""
    compiled = dbus_fast_compiled()
    if compiled is None:
        yield "dbus_fast", False, t("dbus_fast_missing")
    elif compiled:
        yield "dbus_fast", True, t("dbus_fast_ok")
    else:
        yield "dbus_fast", None, t("dbus_fast_slow")


def dbus_fast_compiled() -> bool | None:
    """True when dbus-fast's message parser is its compiled extension, False when Python
    falls back to the .py beside it, None when dbus-fast is not installed. Found without
    importing it (that alone takes a noticeable while on a Pi)."""
    spec = importlib.util.find_spec("dbus_fast")
    if spec is None or not spec.submodule_search_locations:
        return None
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for folder in spec.submodule_search_locations:
        private = Path(folder) / "_private"
        if any((private / f"unmarshaller{suffix}").is_file() for suffix in suffixes):
            return True
    return False


def check_online(
    bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
) -> Iterator[Check]:
    adapter = bus.settings.get("adapter", "hci0")
    if not adapter_present(adapter):
        yield f"bus:{bus.name}", False, t("adapter_bad", bus=bus.name, adapter=adapter)
        return
    yield f"bus:{bus.name}", True, t("adapter_ok", bus=bus.name, adapter=adapter)
    for dev in devices:
        if seen is None:
            yield f"device:{dev.id}", None, f"{dev.id}: check it with: gatewayd test {dev.id}"
            continue
        connected = seen.states.get(dev.id, {}).get("connected")
        how = (
            "connected"
            if connected
            else "not connected; is it in range and powered? gatewayd scan ble"
        )
        yield f"device:{dev.id}", bool(connected), f"{dev.id}: {how}"


def adapter_present(adapter: str, timeout: float = 2.0) -> bool:
    """The kernel's view first; else ask BlueZ on the system bus (also what a fake BlueZ
    answers in tests)."""
    if os.path.exists(f"/sys/class/bluetooth/{adapter}"):
        return True

    async def ask() -> bool:
        try:
            from dbus_fast import BusType
            from dbus_fast.aio import MessageBus
        except ImportError:
            return False
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            node = await bus.introspect("org.bluez", f"/org/bluez/{adapter}")
            return any(i.name == "org.bluez.Adapter1" for i in node.interfaces)
        finally:
            bus.disconnect()

    async def bounded() -> bool:
        async with asyncio.timeout(timeout):
            return await ask()

    try:
        return asyncio.run(bounded())
    except Exception:  # noqa: BLE001 - no bus, no BlueZ, no adapter: all mean "not present"
        return False
