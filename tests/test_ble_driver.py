"""The real BleDriver, through bleak's real BlueZ backend, against DL-B2 emulators behind the
fake BlueZ on a private D-Bus. Assertions are about what the lock did and what the gateway
reported, not about calls made."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.dl_b2 import M_CARD, M_PIN
from gatewayd.errors import DeviceError, DeviceTimeout, TransientError
from gatewayd.model import Action
from tests.ble_fixtures import (
    ADDRESS,
    KEY,
    BleWorld,
    ble_world,
    key_file,
    kill_while_connected,
    make_driver,
    run,
)
from tests.fakes import RecordingContext
from tests.fixtures import Fixture, parametrize_by_fixture, unhex

__all__ = ["ble_world"]  # the fixture, imported for pytest

DEV = "door-main"


class StateHistory(RecordingContext):
    """Also keeps every state change in order: what the broker's retained state went through."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, Any]] = []

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.history.append(dict(state))
        super().publish_state(device, state)

    def locks(self, since: int = 0) -> list[str]:
        """The lock states published since the ``since``-th change."""
        return [s["lock"] for s in self.history[since:] if "lock" in s]


@asynccontextmanager
async def running(
    tmp_path: Path, key: bytes = KEY, device: dict[str, Any] | None = None, **bus: Any
) -> AsyncIterator[tuple[Any, StateHistory]]:
    """A BleDriver for one lock at ADDRESS, running until the block ends."""
    ctx = StateHistory()
    bus.setdefault("scan_seconds", 2.0)
    table = {"address": ADDRESS, "key_file": key_file(tmp_path, key), **(device or {})}
    drv = make_driver(ctx, {DEV: table}, **bus)
    task = asyncio.create_task(drv.run(), name="driver")
    try:
        yield drv, ctx
    finally:
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError), results[0]


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def connected(ctx: RecordingContext) -> bool:
    return bool(ctx.states.get(DEV, {}).get("connected"))


def test_unlock_is_accepted_then_relocks(ble_world: BleWorld, tmp_path: Path) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> dict[str, Any]:
        async with running(tmp_path) as (drv, ctx):
            result = await drv.execute(Action(DEV, "unlock", {"seconds": 1}))
            assert ble_world.emu.call(lambda: lock.lock_state) == 1  # unlocked at the lock
            unlocked = await ctx.wait_for("door.unlocked")
            relocked = await ctx.wait_for("door.locked", timeout=3)
            assert unlocked[0].data == {"method": "remote", "user": None, "counter": 2}
            assert relocked[0].data["method"] == "auto_relock"
            assert ctx.states[DEV]["lock"] == "locked"
            figures, seen = drv.stats(), drv.last_seen()  # what the metrics endpoint gets
            writes = len(ble_world.emu.call(lambda: lock.commands))
            assert figures == {"requests_total": writes, "errors_total": 0, "timeouts_total": 0}
            assert time.time() - seen[DEV] < 2  # the relock notification, just now
            return dict(result)

    result = run(scenario())
    assert result["ack"] == "ok"
    accepted = ble_world.emu.call(lock.accepted)
    unlocks = [c for c in accepted if c.op == 1]
    # the lock verified the MAC over its own challenge and saw our SEQ and ARG
    assert [(c.seq, c.arg) for c in unlocks] == [(result["seq"], 1)]


def test_wrong_key_is_refused_as_bad_mac(ble_world: BleWorld, tmp_path: Path) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> DeviceError:
        async with running(tmp_path, key=bytes(16)) as (drv, ctx):
            with pytest.raises(DeviceError) as info:
                await drv.execute(Action(DEV, "unlock", {"seconds": 5}))
            assert not ctx.of_type("door.unlocked")
            refused = [c for c in ble_world.emu.call(lambda: lock.commands) if c.result]
            assert drv.stats()["errors_total"] == len(refused) >= 1  # the unlock, a STATUS
            return info.value

    err = run(scenario())
    assert (err.device, err.code) == (DEV, "bad_mac")
    assert ble_world.emu.call(lambda: lock.lock_state) == 0
    assert 1 in {c.result for c in ble_world.emu.call(lambda: lock.commands)}
    assert not ble_world.emu.call(lock.accepted)


@pytest.mark.parametrize("fault", ["drop_before_ack", "drop_on_write"])
def test_link_dropped_mid_command_retries_to_a_real_ack(
    ble_world: BleWorld, tmp_path: Path, fault: str
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> dict[str, Any]:
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.inject, fault)
            return dict(await drv.execute(Action(DEV, "unlock", {"seconds": 2})))

    result = run(scenario())
    commands = ble_world.emu.call(lambda: list(lock.commands))
    unlocks = [c for c in commands if c.op == 1]
    assert len(unlocks) == 2  # the dropped one and the retry
    assert not unlocks[0].acked
    # "ok" is the lock's own ACK of the retried command, never the lost one
    assert (unlocks[1].seq, unlocks[1].result, unlocks[1].acked) == (result["seq"], 0, True)
    assert ble_world.emu.call(lambda: lock.connections) == 2


@pytest.mark.parametrize("faults", [("no_ack",), ("drop_before_ack", "drop_before_ack")])
def test_no_ack_is_a_timeout_never_ok(
    ble_world: BleWorld, tmp_path: Path, faults: tuple[str, ...]
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> None:
        async with running(tmp_path, device={"unlock_timeout_seconds": 1.0}) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lambda: lock.inject(*faults, op=1))
            with pytest.raises(DeviceTimeout):
                await drv.execute(Action(DEV, "unlock", {"seconds": 1}))
            assert drv.stats()["timeouts_total"] >= 1

    run(scenario())


def test_refusals_carry_the_lock_code(ble_world: BleWorld, tmp_path: Path) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> list[str]:
        codes = []
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(setattr, lock, "jammed", True)
            ble_world.emu.call(lock.inject, "busy")
            for _ in range(2):
                with pytest.raises(DeviceError) as info:
                    await drv.execute(Action(DEV, "lock"))
                codes.append(info.value.code)
        return codes

    assert run(scenario()) == ["busy", "jammed"]


def test_notifications_resume_after_the_lock_drops_the_link(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> None:
        async with running(tmp_path) as (_drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.drop_link)
            await until(lambda: not connected(ctx))
            await until(lambda: connected(ctx))
            # the emulator forgets subscriptions with the link: this arrives only if the
            # driver enabled notifications again on the new connection
            ble_world.emu.call(lock.card, 77)
            events = await ctx.wait_for("door.unlocked")
            assert events[-1].data["user"] == 77

    run(scenario())
    assert ble_world.emu.call(lambda: lock.connections) == 2


def test_physical_events_reach_the_gateway(ble_world: BleWorld, tmp_path: Path) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    script = [
        (lambda: lock.card(1234), "door.unlocked"),
        (lock.open_door, "door.opened"),
        (lock.close_door, "door.closed"),
        (lambda: lock.credential(M_PIN, 9, valid=False), "door.access_denied"),
        (lock.tamper, "door.tamper"),
        (lambda: lock.mains_lost(12100), "door.on_battery"),
    ]

    async def scenario() -> RecordingContext:
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            for act, type_ in script:
                ble_world.emu.call(act)
                await ctx.wait_for(type_)
            await drv.execute(Action(DEV, "lock"))
            await ctx.wait_for("door.locked")
            ble_world.emu.call(lock.close_door)
            ble_world.emu.call(lock.open_door)  # while locked: forced
            await ctx.wait_for("door.forced")
            return ctx

    ctx = run(scenario())
    card = ctx.of_type("door.unlocked")[0]
    assert (card.device, card.data["method"], card.data["user"]) == (DEV, "card", 1234)
    denied = ctx.of_type("door.access_denied")[0]
    assert (denied.severity, denied.data["method"], denied.data["user"]) == ("warning", "pin", 9)
    assert ctx.of_type("door.on_battery")[0].data["battery_mv"] == 12100
    assert ctx.of_type("door.forced")[0].severity == "critical"
    assert ctx.of_type("door.tamper")[0].severity == "critical"
    state = ctx.states[DEV]
    assert (state["door"], state["battery_mv"], state["mains"]) == ("open", 12100, False)
    assert ctx.of_type("door.locked")[0].data["method"] == "command"
    counters = [e.data["counter"] for e in ctx.events]
    assert counters == sorted(counters)


def test_hold_open_until_locked(ble_world: BleWorld, tmp_path: Path) -> None:
    ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> RecordingContext:
        async with running(tmp_path) as (drv, ctx):
            await drv.execute(Action(DEV, "hold_open"))
            await ctx.wait_for("door.unlocked")
            assert ctx.states[DEV]["lock"] == "held_open"
            status = await drv.execute(Action(DEV, "status"))
            assert status["lock"] == "held_open"
            await drv.execute(Action(DEV, "lock"))
            await ctx.wait_for("door.locked")
            return ctx

    ctx = run(scenario())
    assert ctx.of_type("door.unlocked")[0].data["method"] == "evacuation_release"
    assert ctx.of_type("door.locked")[0].data["method"] == "end_of_hold_open"
    assert ctx.states[DEV]["lock"] == "locked"


def test_absent_lock_is_a_clear_error(
    ble_world: BleWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> DeviceError:
        async with running(tmp_path, scan_seconds=1.0) as (drv, ctx):
            with pytest.raises(DeviceError) as info:
                await drv.execute(Action(DEV, "unlock", {"seconds": 5}))
            await until(lambda: "not seen" in caplog.text, timeout=3)
            assert ctx.states[DEV]["connected"] is False
            return info.value

    with caplog.at_level(logging.WARNING, logger="test.driver"):
        err = run(scenario())
    assert err.code == "not_found"
    assert ADDRESS in str(err)


def test_state_follows_adverts_while_disconnected_then_resyncs(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> None:
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(setattr, lock, "refuse_connections", True)
            ble_world.emu.call(lock.drop_link)
            await until(lambda: not connected(ctx))
            # a card while the gateway is away: only the advertisement tells
            ble_world.emu.call(lock.credential, M_CARD, 5)
            await until(lambda: ctx.states[DEV].get("lock") == "unlocked")
            ble_world.emu.call(setattr, lock, "refuse_connections", False)
            status = await drv.execute(Action(DEV, "status"))
            assert status["lock"] in ("unlocked", "locked")
            assert connected(ctx)

    run(scenario())


def test_keepalive_holds_the_link_past_the_idle_timeout(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY, idle_timeout=1.5)

    async def scenario() -> None:
        async with running(tmp_path, keepalive_seconds=1.0) as (_drv, ctx):
            await until(lambda: connected(ctx))
            await asyncio.sleep(3.5)
            assert connected(ctx)

    run(scenario())
    assert ble_world.emu.call(lambda: lock.connections) == 1
    statuses = [c for c in ble_world.emu.call(lock.accepted) if c.op == 4]
    assert len(statuses) >= 3


@parametrize_by_fixture("dl_b2")
def test_a_recorded_transcript_reaches_the_gateway_as_its_events(
    ble_world: BleWorld, tmp_path: Path, fixture: Fixture
) -> None:
    """Every event notification of the recorded transcript (tests/fixtures/dl_b2), notified
    again by a lock over the fake BlueZ: the gateway publishes each as its recorded event."""
    notes = [
        n for step in fixture["transcript"] for n in step["notifications"] if "event" in n
    ]
    key = bytes.fromhex(fixture["key"])
    lock = ble_world.emu.add_lock(fixture["address"], key)

    async def scenario() -> RecordingContext:
        device = {"address": fixture["address"]}
        async with running(tmp_path, key, device) as (_drv, ctx):
            await until(lambda: connected(ctx))
            for note in notes:
                ble_world.emu.call(lock.send_raw, unhex(note["hex"]))
            await until(lambda: len(door_events(ctx)) >= len(notes))
            await asyncio.sleep(0.2)  # one event each: a second would show by now
            return ctx

    ctx = run(scenario())
    got = [
        {"type": e.type, "severity": e.severity, "data": dict(e.data)} for e in door_events(ctx)
    ]
    assert got == [n["event"] for n in notes]
    assert {e.device for e in door_events(ctx)} == {DEV}


def door_events(ctx: RecordingContext) -> list[Any]:
    return [e for e in ctx.events if e.type.startswith("door.")]


def test_malformed_notifications_are_skipped(
    ble_world: BleWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> RecordingContext:
        async with running(tmp_path) as (_drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.send_raw, b"\x11\x00")  # truncated
            ble_world.emu.call(lock.send_raw, b"\x7f\x00\x01")  # unknown type
            ble_world.emu.call(lock.tamper)
            await ctx.wait_for("door.tamper")
            return ctx

    with caplog.at_level(logging.WARNING, logger="test.driver"):
        ctx = run(scenario())
    assert [e.type for e in ctx.events] == ["door.tamper"]
    assert "malformed" in caplog.text


def test_missing_adapter_fails_the_driver(ble_world: BleWorld, tmp_path: Path) -> None:
    async def scenario() -> None:
        ctx = RecordingContext()
        drv = make_driver(
            ctx, {DEV: {"address": ADDRESS, "key_file": key_file(tmp_path)}}, adapter="hci3"
        )
        with pytest.raises(ExceptionGroup) as info:
            await drv.run()
        assert info.group_contains(TransientError, match="hci3")

    run(scenario())


def test_bad_actions_are_refused_before_the_radio(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        ctx = RecordingContext()
        drv = make_driver(ctx, {DEV: {"address": ADDRESS, "key_file": key_file(tmp_path)}})
        codes = []
        for action in (
            Action(DEV, "unlock", {"seconds": 99}),
            Action(DEV, "explode"),
            Action("door-back", "lock"),
        ):
            with pytest.raises(DeviceError) as info:
                await drv.execute(action)
            codes.append(info.value.code)
        return codes

    assert run(scenario()) == ["bad_args", "unsupported", "unknown_device"]


def test_key_is_never_in_reprs(tmp_path: Path) -> None:
    ctx = RecordingContext()
    drv = make_driver(ctx, {DEV: {"address": ADDRESS, "key_file": key_file(tmp_path)}})
    for obj in (drv.devices[DEV].settings, drv.links[DEV].s):
        assert KEY.hex() not in repr(obj)
        assert repr(KEY) not in repr(obj)


def test_two_locks_share_the_adapter(ble_world: BleWorld, tmp_path: Path) -> None:
    other_key = bytes(range(16))
    front = ble_world.emu.add_lock(ADDRESS, KEY)
    back = ble_world.emu.add_lock("C0:FF:EE:00:00:02", other_key)

    async def scenario() -> RecordingContext:
        ctx = RecordingContext()
        drv = make_driver(
            ctx,
            {
                "door-front": {"address": ADDRESS, "key_file": key_file(tmp_path)},
                "door-back": {
                    "address": "c0:ff:ee:00:00:02",
                    "key_file": key_file(tmp_path, other_key, "back.key"),
                },
            },
            max_connections=2,
            # a client class named in config is the one used (here: BlueZ's own, by path)
            backend="bleak.backends.bluezdbus.client:BleakClientBlueZDBus",
            scanner_backend="bleak.backends.bluezdbus.scanner:BleakScannerBlueZDBus",
        )
        task = asyncio.create_task(drv.run())
        try:
            await drv.execute(Action("door-back", "unlock", {"seconds": 3}))
            ble_world.emu.call(front.card, 501)
            await ctx.wait_for("door.unlocked", count=2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return ctx

    ctx = run(scenario())
    by_device = {e.device: e.data["method"] for e in ctx.of_type("door.unlocked")}
    assert by_device == {"door-back": "remote", "door-front": "card"}
    assert ble_world.emu.call(lambda: [c.op for c in back.accepted()]) == [4, 1]
    assert ble_world.emu.call(lambda: [c.op for c in front.accepted()]) == [4]


def test_lock_out_of_range_then_back(ble_world: BleWorld, tmp_path: Path) -> None:
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> Exception:
        async with running(tmp_path, device={"unlock_timeout_seconds": 1.0}) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.out_of_range)
            await until(lambda: not connected(ctx))
            with pytest.raises((DeviceTimeout, DeviceError)) as info:
                await drv.execute(Action(DEV, "unlock", {"seconds": 5}))
            ble_world.emu.call(lock.back_in_range)
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.card, 8)
            assert (await ctx.wait_for("door.unlocked"))[-1].data["user"] == 8
            return info.value

    err = run(scenario())
    assert getattr(err, "device", None) == DEV or getattr(err, "where", None) == DEV
    assert not [c for c in ble_world.emu.call(lambda: lock.commands) if c.op == 1]


def test_command_waits_for_ready_after_the_challenge_before_anything_moves(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    """A remote unlock's id is fsynced while the challenge is read (Action.ready): the lock
    hands out its challenge, but no command is written until ready is done."""
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> tuple[int, int, int]:
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            before = ble_world.emu.call(lambda: (lock.challenges, len(lock.commands)))
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(
                drv.execute(Action(DEV, "unlock", {"seconds": 1}, ready=ready))
            )
            await until(lambda: ble_world.emu.call(lambda: lock.challenges) > before[0])
            await asyncio.sleep(0.2)  # time enough to write a command, were it allowed
            waiting = len(ble_world.emu.call(lambda: lock.commands)) - before[1]
            ready.set_result(None)
            result = await task
            written = len(ble_world.emu.call(lambda: lock.commands)) - before[1]
            return waiting, written, result["seq"]

    waiting, written, seq = run(scenario())
    assert (waiting, written) == (0, 1)
    last = ble_world.emu.call(lambda: lock.commands)[-1]
    assert (last.op, last.seq, last.result) == (1, seq, 0)  # the unlock, accepted


def test_a_lock_left_connected_by_a_killed_gateway_is_reached_at_once(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    """A gateway killed with kill -9 leaves BlueZ holding the lock's link, and a lock with a
    central does not advertise. The driver finds the device BlueZ holds connected and uses
    that link: the unlock is accepted within its normal deadline, not after the lock's
    120 s idle timeout."""
    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    kill_while_connected(ADDRESS)
    assert ble_world.emu.call(lambda: (lock.is_connected, lock.advertisement())) == (True, None)

    async def scenario() -> tuple[dict[str, Any], float]:
        async with running(tmp_path, scan_seconds=10.0) as (drv, _ctx):
            t0 = time.monotonic()
            result = await drv.execute(Action(DEV, "unlock", {"seconds": 1}))  # 4 s deadline
            return dict(result), time.monotonic() - t0

    result, took = run(scenario())
    assert took < 4.0
    unlocks = [c for c in ble_world.emu.call(lock.accepted) if c.op == 1]
    assert [(c.seq, c.arg) for c in unlocks] == [(result["seq"], 1)]
    # through the link BlueZ kept: the lock saw no second connection
    assert ble_world.emu.call(lambda: lock.connections) == 1


def test_lock_state_is_only_ever_what_the_lock_reported(
    ble_world: BleWorld, tmp_path: Path
) -> None:
    """An unlock while the door is held open leaves it held open (datasheet: until an explicit
    lock), so an "unlocked" notification does not say where the lock is: the state follows
    the lock's STATUS, and is never "unlocked" while the lock is held open."""
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    def statuses() -> int:
        return sum(1 for c in ble_world.emu.call(lock.accepted) if c.op == 4)

    async def scenario() -> tuple[dict[str, Any], list[str], list[str]]:
        async with running(tmp_path) as (drv, ctx):
            held = await drv.execute(Action(DEV, "hold_open"))
            mark = len(ctx.history)
            asked = statuses()
            await drv.execute(Action(DEV, "unlock", {"seconds": 1}))
            ble_world.emu.call(lock.card, 31)
            await ctx.wait_for("door.unlocked", count=3)
            await until(lambda: statuses() > asked)  # the lock was asked where it is
            await asyncio.sleep(1.5)  # past the unlock's relock time: still held open
            while_held = ctx.locks(mark)
            assert ble_world.emu.call(lambda: lock.lock_state) == 2
            assert ctx.states[DEV]["lock"] == "held_open"
            await drv.execute(Action(DEV, "lock"))
            mark = len(ctx.history)
            ble_world.emu.call(lock.card, 32)  # locked -> unlocked -> auto-relock
            await ctx.wait_for("door.locked", count=2, timeout=8)
            return dict(held), while_held, ctx.locks(mark)

    held, while_held, after = run(scenario())
    assert (held["ack"], held["lock"]) == ("ok", "held_open")
    assert while_held == []  # nothing said "unlocked" (nor anything else) while held open
    assert after == ["unlocked", "locked"]  # the card's unlock, from STATUS, then the relock


def test_lock_is_done_only_when_the_lock_says_locked(ble_world: BleWorld, tmp_path: Path) -> None:
    """A LOCK the lock acknowledged, but an exit button pressed at once: the lock's STATUS
    says unlocked, so the action fails (the caller retries); the next one confirms."""
    lock = ble_world.emu.add_lock(ADDRESS, KEY)

    async def scenario() -> tuple[DeviceError, dict[str, Any]]:
        async with running(tmp_path) as (drv, ctx):
            await until(lambda: connected(ctx))
            ble_world.emu.call(lock.then, 2, lock.exit_button)
            with pytest.raises(DeviceError) as info:
                await drv.execute(Action(DEV, "lock"))
            assert ctx.states[DEV]["lock"] == "unlocked"
            return info.value, dict(await drv.execute(Action(DEV, "lock")))

    err, done = run(scenario())
    assert (err.device, err.code) == (DEV, "not_locked")
    assert "unlocked" in str(err)
    assert (done["ack"], done["lock"]) == ("ok", "locked")
    locks = [c for c in ble_world.emu.call(lock.accepted) if c.op == 2]
    assert [c.seq for c in locks][-1] == done["seq"] and len(locks) == 2
    assert ble_world.emu.call(lambda: lock.lock_state) == 0


def test_held_links_are_looked_up_only_for_bluez_client_backends(ble_world: BleWorld) -> None:
    """BlueZ's device object is handed only to BlueZ's client backend (the platform's own or
    a subclass); another backend (a Bluetooth proxy) keeps to adverts. Only locks on the
    bus's own adapter count."""
    from bleak.backends.bluezdbus.client import BleakClientBlueZDBus
    from bleak.backends.client import BaseBleakClient

    from drivers.ble.held import HeldLinks

    class Tuned(BleakClientBlueZDBus):
        pass

    class Proxy(BaseBleakClient):  # never instantiated: only its type is looked at
        pass

    ble_world.emu.add_lock(ADDRESS, KEY)
    kill_while_connected(ADDRESS)

    async def scenario() -> list[str | None]:
        found = []
        for adapter, backend in (("hci0", None), ("hci0", Tuned), ("hci0", Proxy), ("hci1", None)):
            device = await HeldLinks(adapter, backend).find(ADDRESS.lower())
            found.append(device.address if device is not None else None)
        return found

    assert run(scenario()) == [ADDRESS, ADDRESS, None, None]
