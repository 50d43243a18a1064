"""Hardening: devices that misbehave, against the real drivers.

- Charging piles over Modbus TCP (the EBC emulator, the real ModbusDriver, the real charging
  rules): impossible temperature readings, garbled and short replies, a pile that answers only
  every other request.
- The SRB-433 receiver unplugged in the middle of a frame (a real pty, pyserial and all).
- The DL-B2 lock (bleak's BlueZ backend against the fake BlueZ): ACKs with the wrong SEQ, a
  flood of malformed notifications, a lock that refuses connections.

Every test asserts what a user would see: which relay opened (or did not), which events and
alarms came, which command outcome was reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.ble import protocol as lp
from drivers.srb433.codec import Frame, encode
from drivers.srb433.driver import SerialDriver
from drivers.srb433.family import SmokeFamily
from firmware_stubs.ebc_model import Pile, Port
from firmware_stubs.ebc_pile import EbcEmulator
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import DeviceError, DeviceTimeout
from gatewayd.model import Action, is_internal
from gatewayd.schema import validate
from rules.charger import OverheatRule
from rules.fire import FireRule
from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, key_file, make_driver, run
from tests.charger_harness import RulesLoop, on_emulator, running
from tests.fakes import RecordingContext

__all__ = ["ble_world"]

FAST = {"fast_seconds": 0.2, "slow_seconds": 1.0}


async def until(pred: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


def tcp(body: Any, piles: list[Pile]) -> None:
    on_emulator(body, piles, "tcp", FAST)


# -- piles that misbehave (fault injection on the emulator side, test code only) ----------------


class ImpossiblePile(Pile):
    """Ports in ``impossible`` read 0x8000 (-3276.8 °C): no socket is ever that cold."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.impossible: set[int] = set()

    def _temp_raw(self, p: Port) -> int:
        return 0x8000 if p.number in self.impossible else super()._temp_raw(p)


class FlakyPile(Pile):
    """Answers only every other request while ``flaky`` (the others get silence)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.flaky = False
        self.calls = 0
        self.ignored = 0

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes:
        reply = super().handle(pdu, broadcast)
        self.calls += 1
        if self.flaky and self.calls % 2 == 0:
            self.ignored += 1
            return None  # type: ignore[return-value]  # no reply on the wire
        return reply


class ShortPile(Pile):
    """While ``short``, register reads come back one register short (a well-formed frame)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.short = False

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes:
        reply = super().handle(pdu, broadcast)
        if self.short and reply[:1] == b"\x04" and reply[1] >= 2:
            return bytes([4, reply[1] - 2]) + reply[2:-2]
        return reply


def closed(pile: Pile) -> list[int]:
    return [p.number for p in pile.ports if p.relay]


# -- Modbus ---------------------------------------------------------------------------------------


def test_impossible_socket_temperatures_are_sensor_warnings_never_cuts_or_fire() -> None:
    pile = ImpossiblePile(unit=1, ports_n=4)
    for n in (1, 2, 3):
        pile.plug(n)
    pile.break_sensor(2)  # 0x7FFF: 3276.7 °C, the datasheet's open thermistor
    pile.impossible.add(3)  # 0x8000: -3276.8 °C

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({}), FireRule({})])
        async with running(loop, bus, {"pile-1": 1}):
            await loop.wait_for("charger.port_started", count=3)
            await until(lambda: len(loop.alarms) >= 2)
            await asyncio.sleep(1.2)  # a full slow read more: nothing changes its mind
            assert closed(pile) == [1, 2, 3, 4]
            assert loop.of_type("charger.port_cut") == []
            pile.heat_port(1, 70.0)  # the rules still see real heat
            [cut] = await loop.wait_for("charger.port_cut")
        warnings = {(a.type, a.severity, a.data["port"]) for a in loop.alarms[:2]}
        assert warnings == {
            ("charger.sensor_fault", "warning", 2),
            ("charger.sensor_fault", "warning", 3),
        }
        assert cut.data["ports"] == [1] and cut.data["done"] == "relay_opened"
        assert closed(pile) == [2, 3, 4]
        assert loop.of_type("gateway.fire_mode") == []
        state = {p["port"]: p["temperature_c"] for p in loop.states["pile-1"]["ports"]}
        assert state[2] is None and state[3] == -3276.8

    tcp(body, [pile])


def test_garbled_and_short_replies_are_survived_and_cuts_still_verified() -> None:
    pile = ShortPile(unit=1, ports_n=4)
    pile.plug(2)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, {**bus, "breaker_max_seconds": 1.0}, {"pile-1": 1}) as driver:
            await loop.wait_for("charger.port_started")
            session = driver.piles["pile-1"]
            pile.garble = True  # replies carry a function code nobody sent
            await until(lambda: driver.link.stats.garbled >= 2)
            pile.garble = False
            pile.short = True  # well-formed replies, one register short
            await until(lambda: driver.link.stats.garbled >= 4)
            pile.short = False
            await until(lambda: session.online is True)
            pile.heat_port(2, 75.0)
            [cut] = await loop.wait_for("charger.port_cut", timeout=8)
            stats = driver.link.stats
        assert cut.data["done"] == "relay_opened" and not pile.port(2).relay
        assert stats.garbled >= 4
        offline = loop.of_type("charger.offline")
        online = loop.of_type("charger.online")
        assert len(offline) <= 2 and len(online) == len(offline)  # at most one per fault
        assert loop.of_type("charger.port_fault") == []  # garbage never read as a fault

    tcp(body, [pile])


def test_pile_answering_every_other_request_is_not_flapped_offline_and_cuts_verify() -> None:
    pile = FlakyPile(unit=1, ports_n=4)
    for n in (1, 2):
        pile.plug(n)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1}) as driver:
            await loop.wait_for("charger.port_started", count=2)
            pile.flaky = True
            await asyncio.sleep(2.0)  # ~10 fast polls and a slow read, half unanswered
            assert pile.ignored >= 5
            assert loop.of_type("charger.offline") == []  # never 3 misses in a row
            pile.heat_port(1, 80.0)
            [cut] = await loop.wait_for("charger.port_cut", timeout=8)
            stats = driver.link.stats
        assert cut.data["ports"] == [1]
        assert cut.data["done"] == "relay_opened"  # the read-back confirmed it
        assert not pile.port(1).relay and pile.port(2).relay
        assert stats.timeouts >= 5

    tcp(body, [pile])


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_replies_from_the_wrong_unit_are_never_read_as_that_pile(transport: str) -> None:
    """Pile 1 misaddressed: its replies carry unit 2 (a second pile set to the same address, or
    a neighbour's crosstalk). Nothing it says may be taken as pile 1's or pile 2's readings: an
    overheat it reports cuts nothing, pile 2 is left alone, and pile 1 goes offline until it
    answers as itself again, when the same overheat is cut and verified."""
    one, two = Pile(unit=1, ports_n=4), Pile(unit=2, ports_n=4)
    one.plug(3)
    two.plug(1)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1, "pile-2": 2}) as driver:
            await loop.wait_for("charger.port_started", count=2)
            before = len(loop.events)
            one.answer_as = 2
            [offline] = await loop.wait_for("charger.offline", timeout=8)
            one.heat_port(3, 80.0)  # said by a pile that answers under the wrong address
            await asyncio.sleep(1.5)  # ~7 fast polls, several slow reads
            during = loop.events[before:]
            assert offline.device == "pile-1"
            assert driver.link.stats.garbled >= 3
            assert loop.of_type("charger.port_cut") == []
            # Nothing about pile 2 changed (its own samples and the ticks go on, unpublished).
            assert {e.device for e in during if not is_internal(e.type)} == {"pile-1"}
            assert one.port(3).relay and two.port(1).relay
            one.answer_as = None
            [cut] = await loop.wait_for("charger.port_cut", timeout=8)
        assert cut.device == "pile-1" and cut.data["ports"] == [3]
        assert cut.data["done"] == "relay_opened"
        assert loop.of_type("charger.online")[-1].device == "pile-1"
        assert not one.port(3).relay and two.port(1).relay

    on_emulator(body, [one, two], transport, FAST)


# -- the smoke receiver unplugged mid-frame --------------------------------------------------------


def make_serial_driver(port: str, ctx: RecordingContext) -> SerialDriver:
    fast = {"port": port, "ping_seconds": 0.2, "ping_timeout": 0.3, "reconnect_max_seconds": 0.4}
    bus = validate(fast, SerialDriver.bus_schema, "gw.toml", "buses")
    schema = SmokeFamily.schema()
    device = validate({"address": "1A2B3C4D"}, schema, "gw.toml", "smoke-101")
    return SerialDriver(
        BusConfig("house", "serial", bus),
        [DeviceConfig("smoke-101", "smoke", "house", device)],
        ctx,
    )


def receiver_state(ctx: RecordingContext) -> dict[str, Any]:
    return dict(ctx.states.get(ctx.gateway_id, {}).get("receiver.house", {}))


@pytest.mark.parametrize("at", [2, 5, 9])
def test_receiver_unplugged_mid_frame_resumes_without_a_ghost_event(
    tmp_path: Path, at: int
) -> None:
    link = str(tmp_path / "srb433")

    async def scenario() -> RecordingContext:
        async with ReceiverEmulator(link, spacing=0.01) as rx:
            det = rx.detector("1A2B3C4D")
            ctx = RecordingContext()
            task = asyncio.create_task(make_serial_driver(link, ctx).run())
            try:
                await until(lambda: receiver_state(ctx).get("online") is True)
                torn = encode(Frame(0x01, 0x1A2B3C4D, 200, bytes([77])))
                rx.write(torn[:at])  # half an alarm frame, then the plug is pulled
                await asyncio.sleep(0.05)
                await rx.unplug()
                await ctx.wait_for("gateway.receiver_offline")
                await rx.replug()
                await ctx.wait_for("gateway.receiver_online", count=2)  # at start, after replug
                rx.write(torn[at:])  # whatever the new device's buffer still held
                await det.alarm(130)
                await ctx.wait_for("smoke.alarm")
                await asyncio.sleep(0.2)
                assert not task.done()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return ctx

    ctx = asyncio.run(scenario())
    [alarm] = ctx.of_type("smoke.alarm")
    assert alarm.data["density"] == 130  # the real one, once; the torn 77 never became one
    assert len(ctx.of_type("gateway.receiver_offline")) == 1


# -- the lock -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lock_driver(tmp_path: Path, **device: Any) -> AsyncIterator[tuple[Any, RecordingContext]]:
    ctx = RecordingContext()
    table = {"address": ADDRESS, "key_file": key_file(tmp_path), **device}
    drv = make_driver(ctx, {"door-main": table}, scan_seconds=2.0)
    task = asyncio.create_task(drv.run())
    try:
        yield drv, ctx
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def connected(ctx: RecordingContext) -> bool:
    return bool(ctx.states.get("door-main", {}).get("connected"))


def test_acks_with_the_wrong_seq_never_complete_a_command(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> dict[str, Any]:
        async with lock_driver(tmp_path, unlock_timeout_seconds=1.5) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lambda: lock.inject("no_ack", op=1))
            pending = asyncio.create_task(
                drv.execute(Action("door-main", "unlock", {"seconds": 2}))
            )
            await until(lambda: ble_world.emu.call(lambda: any(c.op == 1 for c in lock.commands)))
            seq = ble_world.emu.call(lambda: next(c.seq for c in lock.commands if c.op == 1))
            for wrong in ((seq + 1) & 0xFFFF, (seq - 1) & 0xFFFF, seq ^ 0x8000):
                ble_world.emu.call(lock.send_raw, struct.pack(">BHB", lp.EventType.ACK, wrong, 0))
            with pytest.raises(DeviceTimeout):
                await pending
            # The right ACK, too late: ignored, and the link still works.
            ble_world.emu.call(lock.send_raw, struct.pack(">BHB", lp.EventType.ACK, seq, 0))
            return dict(await drv.execute(Action("door-main", "unlock", {"seconds": 1})))

    result = run(scenario())
    assert result["ack"] == "ok"
    unlocks = [c for c in ble_world.emu.call(lambda: list(lock.commands)) if c.op == 1]
    assert [c.acked for c in unlocks] == [False, True]


def test_a_flood_of_malformed_notifications_is_ignored_quietly(
    ble_world: BleWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    rnd = random.Random(7)
    junk = [bytes([rnd.choice([0x00, 0x0F, 0x1B, 0x7F, 0xFF])]) + rnd.randbytes(rnd.randrange(4))
            for _ in range(150)]  # fmt: skip
    junk += [bytes([t]) + b"\x00" for t in range(0x10, 0x1B)]  # every known TYPE, truncated

    async def scenario() -> RecordingContext:
        async with lock_driver(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            for frame in junk:
                ble_world.emu.call(lock.send_raw, frame)
            ble_world.emu.call(lock.tamper)
            await ctx.wait_for("door.tamper")
            assert connected(ctx)
            assert drv.links["door-main"].malformed == len(junk)
            return ctx

    with caplog.at_level(logging.WARNING, logger="test.driver"):
        ctx = run(scenario())
    assert [e.type for e in ctx.events] == ["door.tamper"]
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(lines) <= 5  # the first few, then one per hundred: no log flood


def test_a_lock_that_refuses_connections_is_never_reported_ok(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    ble_world.emu.call(setattr, lock, "refuse_connections", True)

    async def scenario() -> list[BaseException]:
        errors = []
        async with lock_driver(tmp_path, unlock_timeout_seconds=1.0) as (drv, _ctx):
            for action in ("unlock", "lock"):
                with pytest.raises((DeviceTimeout, DeviceError)) as err:
                    await drv.execute(Action("door-main", action))
                errors.append(err.value)
        return errors

    errors = run(scenario())
    # The daemon's command path turns DeviceTimeout into "timeout" and DeviceError into
    # "device_error" (gatewayd/commands/dispatch.py); "ok" needs the lock's own ACK.
    assert len(errors) == 2
    assert ble_world.emu.call(lambda: (lock.lock_state, lock.commands)) == (0, [])
