"""Locks that BlueZ already holds connected, found without a scan.

bluetoothd does not tie a connection to the D-Bus client that made it: a gateway killed with
``kill -9`` (or by the OOM killer) leaves its locks connected (bluez/bluez#89), and a DL-B2
serves one central at a time and does not advertise while it has one. Waiting for its
advertisement would leave the door unreachable until the lock drops the silent link itself
(120 s). BlueZ's object tree still has the device, though: bleak (3.1 and later) reads it with
``BleakAdapter.get_connected_devices`` (no radio, no scan), and a ``BleakClient`` given that
device uses the existing link (bleak skips ``Connect`` for a device BlueZ reports connected).

Only for BlueZ's own client backend: a BlueZ device object means nothing to another backend
(a Bluetooth proxy, say), which keeps to advertisements. Nothing here raises: a lookup that
cannot be made is "nothing held", and the advertisement path carries on.
"""

from __future__ import annotations

import logging
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from drivers.ble.protocol import SERVICE_UUID

log = logging.getLogger(__name__)


class HeldLinks:
    """BlueZ's connected DL-B2 devices on one adapter, by address."""

    def __init__(self, adapter: str, backend: type[BaseBleakClient] | None) -> None:
        self.adapter = adapter
        self.enabled = _is_bluez(backend)
        self._bleak_adapter: Any = None  # bleak.BleakAdapter, made on first use

    async def find(self, address: str) -> BLEDevice | None:
        """The BLEDevice of the lock at ``address`` if BlueZ holds it connected (services
        resolved), else None."""
        if not self.enabled:
            return None
        try:
            if self._bleak_adapter is None:
                from bleak import BleakAdapter
                from bleak.backends.bluezdbus.adapter import BleakAdapterBlueZDBus

                self._bleak_adapter = await BleakAdapter.get(
                    bluez={"adapter": self.adapter}, backend=BleakAdapterBlueZDBus
                )
            devices = await self._bleak_adapter.get_connected_devices([SERVICE_UUID])
        except (BleakError, OSError, EOFError) as exc:
            log.debug("%s: cannot list connected devices: %r", self.adapter, exc)
            return None
        wanted = address.upper()
        for device in devices:
            if device.address.upper() == wanted:
                return device  # type: ignore[no-any-return]
        return None


def _is_bluez(backend: type[BaseBleakClient] | None) -> bool:
    """True when connections go through BlueZ's client backend (configured, or the
    platform's own) and this bleak can list BlueZ's connected devices."""
    try:
        from bleak import BleakAdapter  # noqa: F401 - bleak >= 3.1
        from bleak.backends.bluezdbus.client import BleakClientBlueZDBus
        from bleak.backends.client import get_platform_client_backend_type

        cls = backend if backend is not None else get_platform_client_backend_type()[0]
    except (ImportError, BleakError):
        return False
    return issubclass(cls, BleakClientBlueZDBus)
