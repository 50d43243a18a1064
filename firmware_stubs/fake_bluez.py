"""A fake BlueZ: the ``org.bluez`` D-Bus API, served on a private bus, backed by emulated
peripherals instead of a radio.

It speaks the subset of bluetoothd's D-Bus interface that bleak's BlueZ backend uses, with the
same object paths, property types, signals and error names, so the *real* bleak backend (and
code built on it) can be tested against emulated devices. It is a test and demo peer: it must
never be pointed at a real system bus (it would fight bluetoothd for ``org.bluez``).

Behaviour kept from bluetoothd because clients depend on it:

* discovery sessions are per D-Bus sender; a second ``StartDiscovery`` from the same sender
  fails with ``org.bluez.Error.InProgress``; a sender that leaves the bus loses its session;
* advertisements arrive as ``PropertiesChanged`` on ``Device1`` (RSSI, ManufacturerData) only
  while the adapter is discovering; devices not seen for ``stale_seconds`` are removed;
* connecting adds the GATT objects, then sets ``ServicesResolved``; a lost link clears
  ``ServicesResolved``/``Connected``, removes the GATT objects and ends every notification
  session, so a client must call ``StartNotify`` again after reconnecting;
* a link belongs to the adapter, not to the client that asked for it: a client that leaves
  the bus without ``Disconnect`` (killed, crashed) leaves the device ``Connected``, with its
  GATT objects, until someone calls ``Disconnect`` or the peripheral hangs up
  (bluez/bluez#89); only that client's discovery and notification sessions end with it;
* notifications are ``PropertiesChanged`` of a characteristic's ``Value``, sent only while
  some client has started notifications on it.

Radio timing is optional: with ``conn_interval`` set, a link exchanges data only at connection
events on a fixed grid, as a real LE link does. A GATT request reaches the peripheral at the
next event and its response comes back one interval later; a notification leaves at the next
event. With the default (0) every exchange is immediate, so tests do not wait on the radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from dbus_fast import BusType, Message, RequestNameReply, Variant
from dbus_fast.aio import MessageBus

from firmware_stubs.fake_bluez_calls import BlueZCalls
from firmware_stubs.peripheral import (
    ADAPTER,
    BLUEZ,
    CHAR,
    DEVICE,
    ERR_FAILED,
    ERR_NOT_SUPPORTED,
    OM,
    PROPS,
    SERVICE,
    Advert,
    CharSpec,
    GattError,
    Peripheral,
    ServiceSpec,
)

__all__ = [
    "ERR_FAILED",
    "ERR_NOT_SUPPORTED",
    "Advert",
    "CharSpec",
    "DeviceLink",
    "FakeBlueZ",
    "GattError",
    "Peripheral",
    "ServiceSpec",
]

log = logging.getLogger(__name__)


class DeviceLink:
    """The fake BlueZ's side of one peripheral: its D-Bus objects and link state."""

    def __init__(self, bluez: FakeBlueZ, peripheral: Peripheral) -> None:
        self.bluez = bluez
        self.peripheral = peripheral
        self.path = f"{bluez.adapter_path}/dev_{peripheral.address.upper().replace(':', '_')}"
        self.connected = False
        self.exported = False
        self.last_seen = 0.0
        self.last_mfr: dict[int, bytes] | None = None
        self.char_paths: dict[str, str] = {}  # uuid -> object path
        self.notifying: dict[str, set[str]] = {}  # char path -> senders
        self.pending: set[asyncio.Task[None]] = set()
        self.connecting: asyncio.Task[None] | None = None
        self.anchor = 0.0  # loop time of the link's first connection event
        self._outgoing: list[tuple[str, bytes]] = []  # notifications for the next event

    def until_next_event(self) -> float:
        """Seconds to the link's next connection event (0 without radio timing)."""
        ci = self.bluez.conn_interval
        if ci <= 0:
            return 0.0
        return ci - (asyncio.get_running_loop().time() - self.anchor) % ci

    def notify(self, uuid: str, data: bytes) -> bool:
        """Send a notification; False when the link is down or nobody subscribed."""
        path = self.char_paths.get(uuid)
        if not self.connected or path is None or not self.notifying.get(path):
            return False
        if self.bluez.conn_interval <= 0:
            self.bluez.set_props(path, CHAR, {"Value": Variant("ay", bytes(data))})
            return True
        if not self._outgoing:  # the first for this event: send them all, in order, then
            asyncio.get_running_loop().call_later(self.until_next_event(), self._send_outgoing)
        self._outgoing.append((path, bytes(data)))
        return True

    def _send_outgoing(self) -> None:
        out, self._outgoing = self._outgoing, []
        for path, data in out:
            if self.connected and self.notifying.get(path):
                self.bluez.set_props(path, CHAR, {"Value": Variant("ay", data)})

    def drop(self, reason: str = "link lost") -> None:
        """End the link now, as a supervision timeout or the peripheral hanging up would."""
        self.bluez.drop_link(self, reason)

    def advertise_now(self) -> None:
        """Push the current advertisement without waiting for the next interval."""
        self.bluez.advertise(self)


class FakeBlueZ:
    """Owns ``org.bluez`` on a bus and serves one adapter with emulated peripherals."""

    def __init__(
        self,
        bus_address: str | None = None,
        adapter: str = "hci0",
        adapter_address: str = "00:1A:7D:DA:71:13",
        advert_interval: float = 0.1,
        stale_seconds: float = 1.0,
        connect_delay: float = 0.02,
        le_conn_timeout: float = 20.0,
        conn_interval: float = 0.0,
    ) -> None:
        self.bus_address = bus_address
        self.adapter_path = f"/org/bluez/{adapter}"
        self.adapter_address = adapter_address
        self.advert_interval = advert_interval
        self.stale_seconds = stale_seconds
        self.connect_delay = connect_delay
        self.le_conn_timeout = le_conn_timeout
        self.conn_interval = conn_interval  # s between connection events; 0 = no radio timing
        self.objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self.links: dict[str, DeviceLink] = {}  # device path -> link
        self.discovery_sessions: set[str] = set()
        self.bus: MessageBus | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._adv_task: asyncio.Task[None] | None = None
        self._calls = BlueZCalls(self)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.bus_address:
            bus = MessageBus(bus_address=self.bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        await bus.connect()
        self.bus = bus
        bus.add_message_handler(self._calls.handle)
        await self._call_daemon(
            "AddMatch",
            "s",
            ["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"],
        )
        reply = await bus.request_name(BLUEZ)
        if reply != RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"could not own {BLUEZ}: {reply}")
        self.add_object(
            self.adapter_path,
            {
                ADAPTER: {
                    "Address": Variant("s", self.adapter_address),
                    "AddressType": Variant("s", "public"),
                    "Name": Variant("s", "gatewayd-fake"),
                    "Alias": Variant("s", "gatewayd-fake"),
                    "Class": Variant("u", 0),
                    "Powered": Variant("b", True),
                    "Discoverable": Variant("b", False),
                    "Pairable": Variant("b", False),
                    "Discovering": Variant("b", False),
                    "UUIDs": Variant("as", []),
                    "Modalias": Variant("s", "usb:v1D6Bp0246d0540"),
                    "Roles": Variant("as", ["central", "peripheral"]),
                }
            },
        )
        self._adv_task = asyncio.create_task(self._advertise_loop(), name="fake-bluez-adverts")

    async def stop(self) -> None:
        tasks = [t for t in (self._adv_task, *self._tasks) if t is not None]
        for link in self.links.values():
            tasks.extend(link.pending)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.wait_for_disconnect(), 5)  # type: ignore[no-untyped-call]
            self.bus = None

    async def _call_daemon(self, member: str, signature: str, body: list[Any]) -> Message:
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        return reply

    # -- peripherals --------------------------------------------------------------------

    def add_peripheral(self, peripheral: Peripheral) -> DeviceLink:
        link = DeviceLink(self, peripheral)
        self.links[link.path] = link
        peripheral.attach(link)
        return link

    def remove_peripheral(self, peripheral: Peripheral) -> None:
        for path, link in list(self.links.items()):
            if link.peripheral is peripheral:
                self.drop_link(link, "removed")
                self._unexport_device(link)
                del self.links[path]

    # -- objects and signals --------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        if self.bus is not None and self.bus.connected:
            # A signal lost on a closing bus is of no consequence to a fake.
            fut = self.bus.send(msg)
            fut.add_done_callback(_ignore_result)

    def add_object(self, path: str, interfaces: dict[str, dict[str, Variant]]) -> None:
        self.objects[path] = interfaces
        self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces]))

    def remove_object(self, path: str) -> None:
        interfaces = self.objects.pop(path, None)
        if interfaces is not None:
            self._send(
                Message.new_signal("/", OM, "InterfacesRemoved", "oas", [path, list(interfaces)])
            )

    def set_props(self, path: str, interface: str, changed: dict[str, Variant]) -> None:
        props = self.objects.get(path, {}).get(interface)
        if props is None:
            return
        props.update(changed)
        self._send(
            Message.new_signal(
                path, PROPS, "PropertiesChanged", "sa{sv}as", [interface, changed, []]
            )
        )

    # -- advertising --------------------------------------------------------------------

    async def _advertise_loop(self) -> None:
        while True:
            await asyncio.sleep(self.advert_interval)
            for link in list(self.links.values()):
                self.advertise(link)

    def advertise(self, link: DeviceLink) -> None:
        now = time.monotonic()
        adv = link.peripheral.advertisement()
        discovering = bool(self.discovery_sessions)
        if adv is None or not discovering:
            if (
                link.exported
                and not link.connected
                and link.connecting is None
                and now - link.last_seen > self.stale_seconds
                and (adv is None or not discovering)
            ):
                self._unexport_device(link)
            return
        link.last_seen = now
        # Real radios never report the same RSSI twice in a row for long; the jitter also
        # makes bluetoothd-like "changed properties only" signalling carry every advert.
        rssi = Variant("n", adv.rssi + random.randint(-3, 3))
        mfr = Variant("a{qv}", {k: Variant("ay", v) for k, v in adv.manufacturer_data.items()})
        if not link.exported:
            self._export_device(link, adv, rssi, mfr)
            return
        changed: dict[str, Variant] = {"RSSI": rssi}
        if adv.manufacturer_data != link.last_mfr:
            changed["ManufacturerData"] = mfr
        link.last_mfr = dict(adv.manufacturer_data)
        self.set_props(link.path, DEVICE, changed)

    def _export_device(self, link: DeviceLink, adv: Advert, rssi: Variant, mfr: Variant) -> None:
        p = link.peripheral
        link.exported = True
        link.last_mfr = dict(adv.manufacturer_data)
        self.add_object(
            link.path,
            {
                DEVICE: {
                    "Address": Variant("s", p.address.upper()),
                    "AddressType": Variant("s", "public"),
                    "Name": Variant("s", adv.name),
                    "Alias": Variant("s", adv.name),
                    "Adapter": Variant("o", self.adapter_path),
                    "Paired": Variant("b", False),
                    "Bonded": Variant("b", False),
                    "Trusted": Variant("b", False),
                    "Blocked": Variant("b", False),
                    "LegacyPairing": Variant("b", False),
                    "Connected": Variant("b", False),
                    "ServicesResolved": Variant("b", False),
                    "UUIDs": Variant("as", list(adv.service_uuids)),
                    "RSSI": rssi,
                    "ManufacturerData": mfr,
                }
            },
        )

    def _unexport_device(self, link: DeviceLink) -> None:
        if link.exported:
            link.exported = False
            self.remove_object(link.path)

    # -- connections --------------------------------------------------------------------

    def _export_gatt(self, link: DeviceLink) -> None:
        handle = 0x000A
        for spec in link.peripheral.services:
            spath = f"{link.path}/service{handle:04x}"
            self.add_object(
                spath,
                {
                    SERVICE: {
                        "UUID": Variant("s", spec.uuid),
                        "Device": Variant("o", link.path),
                        "Primary": Variant("b", True),
                        "Includes": Variant("ao", []),
                    }
                },
            )
            handle += 1
            for char in spec.chars:
                cpath = f"{spath}/char{handle:04x}"
                props = {
                    "UUID": Variant("s", char.uuid),
                    "Service": Variant("o", spath),
                    "Value": Variant("ay", b""),
                    "Flags": Variant("as", list(char.flags)),
                    "MTU": Variant("q", 247),
                }
                if "notify" in char.flags or "indicate" in char.flags:
                    props["Notifying"] = Variant("b", False)
                    link.notifying[cpath] = set()
                self.add_object(cpath, {CHAR: props})
                link.char_paths[char.uuid] = cpath
                # declaration + value, + CCCD for notifiable characteristics
                handle += 3 if "Notifying" in props else 2

    async def _connect(self, link: DeviceLink) -> None:
        await asyncio.sleep(self.connect_delay)
        # An LE connection forms on the peripheral's next connectable advertisement, so a
        # Connect to a device out of range waits for it (the kernel gives up after 20 s).
        deadline = time.monotonic() + self.le_conn_timeout
        while link.peripheral.advertisement() is None:
            if time.monotonic() >= deadline:
                raise GattError("Connection timed out")
            await asyncio.sleep(self.advert_interval)
        link.peripheral.accept_connection()
        link.connected = True
        link.anchor = asyncio.get_running_loop().time()
        self.set_props(link.path, DEVICE, {"Connected": Variant("b", True)})
        link.peripheral.connected()

    def _resolve_services(self, link: DeviceLink) -> None:
        if link.connected:
            self._export_gatt(link)
            self.set_props(link.path, DEVICE, {"ServicesResolved": Variant("b", True)})

    def drop_link(self, link: DeviceLink, reason: str) -> None:
        if not link.connected:
            return
        log.debug("%s: link down (%s)", link.peripheral.address, reason)
        link.connected = False
        for task in list(link.pending):
            task.cancel()
        self.set_props(link.path, DEVICE, {"ServicesResolved": Variant("b", False)})
        self.set_props(link.path, DEVICE, {"Connected": Variant("b", False)})
        for cpath in list(link.char_paths.values()):
            self.remove_object(cpath)
        for spath in {p.rsplit("/", 1)[0] for p in link.char_paths.values()}:
            self.remove_object(spath)
        link.char_paths.clear()
        link.notifying.clear()
        link.last_seen = time.monotonic()
        link.peripheral.disconnected()


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
