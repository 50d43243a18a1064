"""What an emulated Bluetooth LE peripheral shows the fake BlueZ: its GATT table, its
advertisement, and its answers to reads and writes. Also the BlueZ names both sides share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware_stubs.fake_bluez import DeviceLink

BLUEZ = "org.bluez"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
ERR_FAILED = "org.bluez.Error.Failed"
ERR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"


class GattError(Exception):
    """Raised by a peripheral to fail a D-Bus call with a BlueZ error name."""

    def __init__(self, text: str, name: str = ERR_FAILED) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


@dataclass(frozen=True)
class CharSpec:
    uuid: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class ServiceSpec:
    uuid: str
    chars: tuple[CharSpec, ...]


@dataclass
class Advert:
    """What a peripheral puts on the air right now."""

    name: str
    service_uuids: list[str]
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    rssi: int = -60


class Peripheral(ABC):
    """An emulated device. The fake BlueZ calls these on its event loop."""

    address: str
    services: tuple[ServiceSpec, ...]

    def attach(self, link: DeviceLink) -> None:
        """Called once when added: ``link`` is how the peripheral notifies and drops."""
        self.link = link

    @abstractmethod
    def advertisement(self) -> Advert | None:
        """The current advertisement, or None when nothing is on the air."""

    def accept_connection(self) -> None:  # noqa: B027 - optional hook
        """Raise ``GattError`` to refuse a connection."""

    def connected(self) -> None:  # noqa: B027 - optional hook
        """The link came up."""

    def disconnected(self) -> None:  # noqa: B027 - optional hook
        """The link went down (either side)."""

    @abstractmethod
    async def read(self, uuid: str) -> bytes: ...

    @abstractmethod
    async def write(self, uuid: str, data: bytes, with_response: bool) -> None: ...
