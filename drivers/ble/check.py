"""`gatewayd check` for a Bluetooth bus: offline, whether bleak's D-Bus library runs compiled;
with ``--all``, whether the adapter is there and each lock is connected (the daemon's view) or
how to check it (`gatewayd test`). Only asks. ``BleDriver.check_host`` and
``BleDriver.check_online`` call these.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
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
    connected = [d.id for d in devices if seen and seen.states.get(d.id, {}).get("connected")]
    key = f"bus:{bus.name}"
    if connected:  # the daemon's own links prove the adapter, whatever bus this shell sees
        yield key, True, t("adapter_in_use", bus=bus.name, adapter=adapter, count=len(connected))
    elif adapter_present(adapter):
        yield key, True, t("adapter_ok", bus=bus.name, adapter=adapter)
    else:
        yield key, False, t("adapter_bad", bus=bus.name, adapter=adapter)
        return
    for dev in devices:
        if seen is None:
            yield f"device:{dev.id}", None, t("lock_test_it", device=dev.id)
        elif dev.id in connected and seen.states.get(dev.id, {}).get("key_ok") is False:
            yield f"device:{dev.id}", False, t("lock_key_refused", device=dev.id)
        elif dev.id in connected:
            yield f"device:{dev.id}", True, t("lock_connected", device=dev.id)
        else:
            yield f"device:{dev.id}", False, t("lock_not_connected", device=dev.id)


def adapter_present(adapter: str, timeout: float = 2.0) -> bool:
    """Whether BlueZ offers ``adapter``: asked as bleak and the daemon ask it (BlueZ's object
    list on the system bus, ``DBUS_SYSTEM_BUS_ADDRESS`` honoured), so this check agrees with
    `gatewayd scan ble` and the running daemon. /sys is not enough on its own: an adapter the
    kernel has but BlueZ does not serve is of no use to bleak, and a private bus (the fake
    BlueZ of the tests and the demo) has no /sys entry at all."""

    async def ask() -> bool:
        try:
            from dbus_fast import BusType, Message, MessageType
            from dbus_fast.aio import MessageBus
        except ImportError:
            return False
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path="/",
                    interface="org.freedesktop.DBus.ObjectManager",
                    member="GetManagedObjects",
                )
            )
            if reply is None or reply.message_type != MessageType.METHOD_RETURN:
                return False
            interfaces = reply.body[0].get(f"/org/bluez/{adapter}", {})
            return "org.bluez.Adapter1" in interfaces
        finally:
            bus.disconnect()

    async def bounded() -> bool:
        async with asyncio.timeout(timeout):
            return await ask()

    try:
        return asyncio.run(bounded())
    except Exception:  # noqa: BLE001 - no bus, no BlueZ, no adapter: all mean "not present"
        return False
