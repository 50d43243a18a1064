"""DL-B2 lock over BLE: how long a connected gateway takes to unlock, and to come back to a lock
that returns to range. Real bleak BlueZ backend, fake BlueZ on a private D-Bus, emulated lock.

Rows:
- ``driver.execute(unlock)`` to the lock's ok ACK, p50 and p99 over N unlocks, beside a bare
  bleak client doing the same exchange (read CHALLENGE, write COMMAND, await the ACK notify)
  against the same emulated lock in the same run: the ratio is the driver's overhead;
- the call to the lock accepting the command (its own command log), p50;
- reconnection: the lock back in range → the driver connected again (notifications on, STATUS
  synced), beside a bare bleak client finding it by address and connecting.

The datasheet wants phone tap → open door under 5 s, "well under a second" of it the gateway's.
Run alone: ``python -m bench.bench_ble [--quick]``.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, row
from drivers.ble import protocol as p
from firmware_stubs.dl_b2 import DLB2
from firmware_stubs.harness import BleWorld, close_bleak, world
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.model import Action
from gatewayd.schema import validate
from tests.fakes import RecordingContext

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ADDRESS = "C0:FF:EE:00:00:01"
DEV = "door-main"


async def bare_unlocks(lock_address: str, n: int) -> list[float]:
    """The exchange with nothing around it: bleak, the codec, a future for the ACK."""
    from bleak import BleakClient, BleakScanner

    device = await BleakScanner.find_device_by_address(lock_address, timeout=5)
    assert device is not None
    loop = asyncio.get_running_loop()
    acks: dict[int, asyncio.Future[int]] = {}

    def on_notify(_: Any, data: bytearray) -> None:
        if data[0] == p.EventType.ACK:
            _, seq, result = struct.unpack(">BHB", data[:4])
            if seq in acks and not acks[seq].done():
                acks[seq].set_result(result)

    times = []
    async with BleakClient(device, timeout=10) as client:
        await client.start_notify(p.EVENTS_UUID, on_notify)
        for seq in range(1, n + 1):
            t0 = time.perf_counter()
            challenge = await client.read_gatt_char(p.CHALLENGE_UUID)
            acks[seq] = loop.create_future()
            frame = p.build_command(KEY, bytes(challenge), p.Op.UNLOCK, seq, 1)
            await client.write_gatt_char(p.COMMAND_UUID, frame, response=True)
            assert await asyncio.wait_for(acks[seq], 5) == 0
            times.append(time.perf_counter() - t0)
    return times


async def bare_reconnect(w: BleWorld, lock: DLB2) -> float:
    from bleak import BleakClient, BleakScanner

    w.emu.call(lock.out_of_range)
    await asyncio.sleep(1.5)  # the fake BlueZ forgets the device after stale_seconds
    t0 = time.perf_counter()
    w.emu.call(lock.back_in_range)
    device = await BleakScanner.find_device_by_address(ADDRESS, timeout=10)
    assert device is not None
    async with BleakClient(device, timeout=10) as client:
        await client.start_notify(p.EVENTS_UUID, lambda *_: None)
        return time.perf_counter() - t0  # before the disconnect on leaving the block


def make_driver(ctx: RecordingContext, key_path: str) -> Any:
    from drivers.ble.driver import BleDriver
    from drivers.ble.family import DoorFamily

    bus = BusConfig(
        "ble", "ble", validate({"scan_seconds": 5}, BleDriver.bus_schema, "bench", "bus")
    )
    dev = DeviceConfig(
        DEV,
        "door_lock",
        "ble",
        validate(
            {"address": ADDRESS, "key_file": key_path},
            DoorFamily.schema(),
            "bench",
            "device",
        ),
    )
    return BleDriver(bus, [dev], ctx)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def driver_figures(
    w: BleWorld, lock: DLB2, key_path: str, n: int, returns: int
) -> dict[str, list[float]]:
    ctx = RecordingContext()
    drv = make_driver(ctx, key_path)
    task = asyncio.create_task(drv.run())

    def connected() -> bool:
        return bool(ctx.states.get(DEV, {}).get("connected"))

    out: dict[str, list[float]] = {"unlock": [], "accept": [], "reconnect": []}
    try:
        await until(connected)
        for _ in range(n):
            before = len(w.emu.call(lambda: lock.commands))
            t0, m0 = time.perf_counter(), time.monotonic()
            await drv.execute(Action(DEV, "unlock", {"seconds": 1}))
            out["unlock"].append(time.perf_counter() - t0)
            record = w.emu.call(lambda: lock.commands[before])  # noqa: B023 - called at once
            out["accept"].append(record.mono - m0)
        for _ in range(returns):
            w.emu.call(lock.out_of_range)
            await until(lambda: not connected())
            await asyncio.sleep(1.5)
            t0 = time.perf_counter()
            w.emu.call(lock.back_in_range)
            await until(connected)
            out["reconnect"].append(time.perf_counter() - t0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


def run(quick: bool) -> list[dict[str, Any]]:
    n = 20 if quick else 200
    returns = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp, world() as w:
        key_path = Path(tmp, "door.key")
        key_path.write_text(KEY.hex())
        key_path.chmod(0o600)
        lock = w.emu.add_lock(ADDRESS, KEY)

        async def measure() -> tuple[list[float], list[float], dict[str, list[float]]]:
            try:
                bare = await bare_unlocks(ADDRESS, n)
                bare_back = [await bare_reconnect(w, lock) for _ in range(returns)]
                await asyncio.sleep(0.3)  # let the lock advertise again
                figures = await driver_figures(w, lock, str(key_path), n, returns)
                return bare, bare_back, figures
            finally:
                await close_bleak()

        bare, bare_back, fig = asyncio.run(measure())
    ms = 1000.0
    p50, p99 = percentile(fig["unlock"], 50) * ms, percentile(fig["unlock"], 99) * ms
    b50, b99 = percentile(bare, 50) * ms, percentile(bare, 99) * ms
    back, bare_b = percentile(fig["reconnect"], 50) * ms, percentile(bare_back, 50) * ms
    return [
        row(f"unlock execute→ok ACK p50 (n={n})", p50, "ms", "bare bleak exchange p50", b50,
            "< 250 ms", p50 < 250),
        row(f"unlock execute→ok ACK p99 (n={n})", p99, "ms", "bare bleak exchange p99", b99,
            "< 1000 ms (datasheet: well under 1 s)", p99 < 1000),
        row("unlock execute→lock accepted p50", percentile(fig["accept"], 50) * ms, "ms"),
        row(f"reconnect after lock returns p50 (n={returns})", back, "ms",
            "bare bleak find+connect+notify p50", bare_b, "< 2000 ms", back < 2000),
    ]  # fmt: skip


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(r, flush=True)
