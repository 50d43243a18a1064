"""The D-Bus side of the fake BlueZ: method calls on the adapter, devices and characteristics,
answered the way bluetoothd answers them (same error names and texts where clients look)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dbus_fast import Message, MessageType, Variant

from firmware_stubs.peripheral import (
    ADAPTER,
    CHAR,
    DEVICE,
    ERR_DOES_NOT_EXIST,
    ERR_FAILED,
    ERR_IN_PROGRESS,
    ERR_NOT_PERMITTED,
    ERR_NOT_SUPPORTED,
    ERR_UNKNOWN_METHOD,
    ERR_UNKNOWN_OBJECT,
    OM,
    PROPS,
    GattError,
)

if TYPE_CHECKING:
    from firmware_stubs.fake_bluez import DeviceLink, FakeBlueZ

log = logging.getLogger(__name__)


class BlueZCalls:
    """Dispatches the method calls addressed to ``org.bluez``; state lives in the FakeBlueZ."""

    def __init__(self, bluez: FakeBlueZ) -> None:
        self.bz = bluez

    def handle(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body[0].startswith(":") and not msg.body[2]:
                self._forget_sender(msg.body[0])
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        path, iface, member = msg.path or "", msg.interface or "", msg.member or ""
        if iface == OM and member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._managed()])
        if path not in self.bz.objects:
            return Message.new_error(msg, ERR_UNKNOWN_OBJECT, f"no object {path}")
        if iface == PROPS:
            return self._properties(msg)
        if iface == ADAPTER and path == self.bz.adapter_path:
            return self._adapter_call(msg)
        link = self.bz.links.get(path)
        if iface == DEVICE and link is not None:
            return self._device_call(msg, link)
        if iface == CHAR:
            link = self.bz.links.get(path.rsplit("/", 2)[0])
            if link is not None:
                return self._char_call(msg, link)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"{iface}.{member} not handled")

    def _managed(self) -> dict[str, dict[str, dict[str, Variant]]]:
        return dict(self.bz.objects)

    def _properties(self, msg: Message) -> Message:
        ifaces = self.bz.objects[msg.path or ""]
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [ifaces.get(msg.body[0], {})])
        if msg.member == "Get":
            value = ifaces.get(msg.body[0], {}).get(msg.body[1])
            if value is None:
                return Message.new_error(
                    msg, "org.freedesktop.DBus.Error.InvalidArgs", "no such property"
                )
            return Message.new_method_return(msg, "v", [value])
        if msg.member == "Set":
            # Only the harmless flags bleak may set (Trusted before pairing) are writable.
            iface, name, value = msg.body
            if name not in ("Trusted", "Alias"):
                return Message.new_error(msg, ERR_NOT_PERMITTED, f"{name} is read-only")
            self.bz.set_props(msg.path or "", iface, {name: value})
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"Properties.{msg.member}")

    def _forget_sender(self, sender: str) -> None:
        """A client left the bus: its sessions end. Its connections do not: bluetoothd keeps
        a device connected after the client that connected it died (bluez/bluez#89)."""
        if sender in self.bz.discovery_sessions:
            self.bz.discovery_sessions.discard(sender)
            if not self.bz.discovery_sessions:
                self.bz.set_props(
                    self.bz.adapter_path, ADAPTER, {"Discovering": Variant("b", False)}
                )
        for link in self.bz.links.values():
            for cpath, senders in link.notifying.items():
                if sender in senders:
                    senders.discard(sender)
                    if not senders:
                        self.bz.set_props(cpath, CHAR, {"Notifying": Variant("b", False)})

    def _adapter_call(self, msg: Message) -> Message:
        sender = msg.sender or ""
        if msg.member == "SetDiscoveryFilter":
            return Message.new_method_return(msg)
        if msg.member == "StartDiscovery":
            if sender in self.bz.discovery_sessions:
                return Message.new_error(msg, ERR_IN_PROGRESS, "Operation already in progress")
            self.bz.discovery_sessions.add(sender)
            if len(self.bz.discovery_sessions) == 1:
                self.bz.set_props(
                    self.bz.adapter_path, ADAPTER, {"Discovering": Variant("b", True)}
                )
            return Message.new_method_return(msg)
        if msg.member == "StopDiscovery":
            if sender not in self.bz.discovery_sessions:
                return Message.new_error(msg, ERR_FAILED, "No discovery started")
            self._forget_sender(sender)
            return Message.new_method_return(msg)
        if msg.member == "RemoveDevice":
            link = self.bz.links.get(msg.body[0])
            if link is None or not link.exported:
                return Message.new_error(msg, ERR_DOES_NOT_EXIST, "Does Not Exist")
            self.bz.drop_link(link, "removed")
            self.bz._unexport_device(link)
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"Adapter1.{msg.member}")

    def _device_call(self, msg: Message, link: DeviceLink) -> Message | bool:
        if msg.member == "Connect":
            if link.connected:
                return Message.new_method_return(msg)
            if link.connecting is not None:
                return Message.new_error(msg, ERR_IN_PROGRESS, "In Progress")

            async def connect() -> None:
                await self.bz._connect(link)
                # bluetoothd answers Connect once the link is up and resolves services
                # afterwards; clients wait for ServicesResolved.
                self.bz._send(Message.new_method_return(msg))
                await asyncio.sleep(self.bz.connect_delay)
                self.bz._resolve_services(link)

            task = self._spawn(msg, connect, link=None)
            link.connecting = task

            def connected(_: asyncio.Task[None]) -> None:
                link.connecting = None

            task.add_done_callback(connected)
            return True
        if msg.member == "Disconnect":
            if link.connecting is not None:  # cancels a pending Connect, as in bluetoothd
                link.connecting.cancel()
            self.bz.drop_link(link, "disconnect requested")
            return Message.new_method_return(msg)
        if msg.member == "Pair":
            return Message.new_error(msg, ERR_NOT_SUPPORTED, "pairing is not emulated")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"Device1.{msg.member}")

    def _char_call(self, msg: Message, link: DeviceLink) -> Message | bool:
        path = msg.path or ""
        uuid = self.bz.objects[path][CHAR]["UUID"].value
        flags = self.bz.objects[path][CHAR]["Flags"].value
        if not link.connected:
            return Message.new_error(msg, ERR_FAILED, "Not connected")
        if msg.member == "ReadValue":
            if "read" not in flags:
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Read not permitted")

            async def read() -> None:
                await asyncio.sleep(link.until_next_event())  # the request's event
                value = await link.peripheral.read(uuid)
                await asyncio.sleep(self.bz.conn_interval)  # the response's, one later
                # bluetoothd caches what it read in Value and signals the change.
                self.bz.set_props(path, CHAR, {"Value": Variant("ay", value)})
                self.bz._send(Message.new_method_return(msg, "ay", [value]))

            self._spawn(msg, read, link)
            return True
        if msg.member == "WriteValue":
            data, options = msg.body
            kind = options.get("type", Variant("s", "request")).value
            if not {"write", "write-without-response"} & set(flags):
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Write not permitted")

            async def write() -> None:
                await asyncio.sleep(link.until_next_event())
                await link.peripheral.write(uuid, bytes(data), kind != "command")
                if kind != "command":  # a write request is answered at the next event
                    await asyncio.sleep(self.bz.conn_interval)
                self.bz._send(Message.new_method_return(msg))

            self._spawn(msg, write, link)
            return True
        if msg.member in ("StartNotify", "StopNotify"):
            senders = link.notifying.get(path)
            if senders is None:
                return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
            was = bool(senders)
            if msg.member == "StartNotify":
                senders.add(msg.sender or "")
            else:
                senders.discard(msg.sender or "")
            if was != bool(senders):
                self.bz.set_props(path, CHAR, {"Notifying": Variant("b", bool(senders))})
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"GattCharacteristic1.{msg.member}")

    def _spawn(
        self, msg: Message, work: Callable[[], Awaitable[None]], link: DeviceLink | None
    ) -> asyncio.Task[None]:
        """Run a call's work in a task and answer it with an error if the work fails;
        GATT work belongs to the link, so a dropped link fails it with "Not connected"."""

        async def run() -> None:
            try:
                await work()
            except GattError as exc:
                self.bz._send(Message.new_error(msg, exc.name, exc.text))
            except Exception as exc:  # a bug in a peripheral must not hang the client
                log.exception("fake BlueZ call failed")
                self.bz._send(Message.new_error(msg, ERR_FAILED, f"emulator error: {exc}"))

        owner = link.pending if link is not None else self.bz._tasks

        def done(task: asyncio.Task[None]) -> None:
            owner.discard(task)
            # Cancelled (a dropped link, or shutdown), possibly before it even started.
            if task.cancelled():
                self.bz._send(Message.new_error(msg, ERR_FAILED, "Not connected"))

        task = asyncio.create_task(run())
        owner.add(task)
        task.add_done_callback(done)
        return task
