"""The DL-B2 emulator itself, through bare bleak and the fake BlueZ: the datasheet rules the
driver tests rely on but cannot provoke (a driver never reuses a challenge)."""

from __future__ import annotations

import asyncio
from typing import Any

from bleak import BleakClient, BleakScanner
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from drivers.ble import protocol as p
from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, kill_while_connected, run

__all__ = ["ble_world"]  # the fixture, imported for pytest


def test_emulator_challenge_is_good_for_one_command(ble_world: BleWorld) -> None:
    """The emulator itself, through bare bleak: a reused challenge is refused as stale."""
    ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> list[p.Notification]:
        got: asyncio.Queue[p.Notification] = asyncio.Queue()
        device = await BleakScanner.find_device_by_address(ADDRESS, timeout=5)
        assert device is not None
        async with BleakClient(device, timeout=5) as client:
            await client.start_notify(
                p.EVENTS_UUID, lambda _, data: got.put_nowait(p.parse_event(data))
            )
            challenge = bytes(await client.read_gatt_char(p.CHALLENGE_UUID))
            for seq in (1, 2):
                frame = p.build_command(KEY, challenge, p.Op.LOCK, seq, 0)
                await client.write_gatt_char(p.COMMAND_UUID, frame, response=True)
            return [await asyncio.wait_for(got.get(), 2) for _ in range(3)]

    frames = run(scenario())
    acks = [f for f in frames if isinstance(f, p.Ack)]
    assert [(a.seq, a.code) for a in acks] == [(1, "ok"), (2, "stale_challenge")]


def test_idle_central_is_dropped(ble_world: BleWorld) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY, idle_timeout=0.5)

    async def scenario() -> bool:
        device = await BleakScanner.find_device_by_address(ADDRESS, timeout=5)
        assert device is not None
        dropped = asyncio.Event()
        async with BleakClient(device, lambda _: dropped.set(), timeout=5) as client:
            await asyncio.wait_for(dropped.wait(), 3)
            return client.is_connected

    assert run(scenario()) is False
    assert ble_world.emu.call(lambda: lock.is_connected) is False


def test_lock_out_of_range_is_not_found(ble_world: BleWorld) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    ble_world.emu.call(lock.out_of_range)

    async def scenario() -> object:
        return await BleakScanner.find_device_by_address(ADDRESS, timeout=1)

    assert run(scenario()) is None


def test_radio_timing_puts_gatt_exchanges_on_connection_events() -> None:
    """With ``conn_interval`` a GATT request waits for the next connection event and its
    answer comes one event later: a read costs between one and two intervals, never less,
    and the lock's ACK still follows its command in order."""
    from firmware_stubs.harness import world

    ci = 0.05
    with world(conn_interval=ci) as w:
        w.emu.add_lock(ADDRESS, KEY)

        async def scenario() -> tuple[list[float], list[p.Notification]]:
            got: asyncio.Queue[p.Notification] = asyncio.Queue()
            device = await BleakScanner.find_device_by_address(ADDRESS, timeout=5)
            assert device is not None
            reads = []
            async with BleakClient(device, timeout=5) as client:
                await client.start_notify(
                    p.EVENTS_UUID, lambda _, data: got.put_nowait(p.parse_event(data))
                )
                for seq in (1, 2, 3):
                    t0 = asyncio.get_running_loop().time()
                    challenge = bytes(await client.read_gatt_char(p.CHALLENGE_UUID))
                    reads.append(asyncio.get_running_loop().time() - t0)
                    frame = p.build_command(KEY, challenge, p.Op.LOCK, seq, 0)
                    await client.write_gatt_char(p.COMMAND_UUID, frame, response=True)
                frames = [await asyncio.wait_for(got.get(), 2) for _ in range(6)]
            return reads, frames

        reads, frames = run(scenario())
    assert all(ci * 0.9 <= r <= 2 * ci + 0.03 for r in reads), reads
    acks = [(f.seq, f.code) for f in frames if isinstance(f, p.Ack)]
    assert acks == [(1, "ok"), (2, "ok"), (3, "ok")]


async def bluez_tree() -> dict[str, dict[str, dict[str, Any]]]:
    """BlueZ's object tree as a newly started client reads it (GetManagedObjects)."""
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
        assert reply is not None
        return {
            path: {i: {k: v.value for k, v in props.items()} for i, props in ifaces.items()}
            for path, ifaces in reply.body[0].items()
        }
    finally:
        bus.disconnect()


def test_a_central_killed_while_connected_leaves_the_link_up(ble_world: BleWorld) -> None:
    """bluetoothd does not tie a connection to the D-Bus client that asked for it: a client
    killed without Disconnect leaves the device connected (bluez/bluez#89, hbldh/bleak#992),
    and only that client's notification session ends. The DL-B2, holding its one central,
    does not advertise until it drops the idle link itself."""
    lock = ble_world.emu.add_lock(ADDRESS, KEY, idle_timeout=2.0)
    kill_while_connected(ADDRESS)

    async def scenario() -> tuple[dict[str, Any], list[bool], object]:
        tree = await bluez_tree()
        [device] = [i["org.bluez.Device1"] for i in tree.values() if "org.bluez.Device1" in i]
        notifying = [
            i["org.bluez.GattCharacteristic1"]["Notifying"]
            for i in tree.values()
            if i.get("org.bluez.GattCharacteristic1", {}).get("UUID") == p.EVENTS_UUID
        ]
        seen = await BleakScanner.find_device_by_address(ADDRESS, timeout=0.5)
        return device, notifying, seen

    device, notifying, seen = run(scenario())
    assert (device["Address"], device["Connected"], device["ServicesResolved"]) == (
        ADDRESS,
        True,
        True,
    )
    assert notifying == [False]  # the dead client's subscription went with it
    assert seen is None  # connected: no adverts
    assert ble_world.emu.call(lambda: (lock.is_connected, lock.connections)) == (True, 1)
    # The lock hangs up on the silent central after its idle timeout, then advertises again.
    ble_world.emu.wait_until(lambda: not lock.is_connected, timeout=4)

    async def rescan() -> object:
        return await BleakScanner.find_device_by_address(ADDRESS, timeout=2)

    assert run(rescan()) is not None
