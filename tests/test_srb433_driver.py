"""The real SerialDriver against the real SRB-433 emulator over a pty (pyserial and all).

Host frames are checked byte for byte against a CRC written here from the datasheet, not the
codec's, so a shared mistake cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.srb433.codec import Frame
from drivers.srb433.driver import SerialDriver
from drivers.srb433.family import SmokeFamily
from drivers.srb433.transport import SerialTransport
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import ConfigError, DeviceError, TransientError
from gatewayd.schema import validate
from tests.fakes import RecordingContext
from tests.fixtures import Fixture, parametrize_by_fixture, unhex
from tests.fixtures.cases import TS
from tests.reference import reference_crc

BUS = "house"
DETECTORS = {"smoke-101": "1A2B3C4D", "smoke-102": "cafebabe"}
DATASHEET_EXAMPLE = bytes.fromhex("AA 55 07 01 1A 2B 3C 4D 07 5A 29 5D")


def host_frame(type_: int, device: int, seq: int, payload: bytes = b"") -> bytes:
    body = bytes((6 + len(payload), type_)) + device.to_bytes(4, "big") + bytes((seq,)) + payload
    return b"\xaa\x55" + body + reference_crc(body).to_bytes(2, "little")


def make_driver(
    port: str, ctx: RecordingContext, detectors: dict[str, str] = DETECTORS, **settings: Any
) -> SerialDriver:
    fast = {"ping_seconds": 0.2, "ping_timeout": 0.3, "reconnect_max_seconds": 0.4}
    bus = validate({"port": port, **fast, **settings}, SerialDriver.bus_schema, "gw.toml", "buses")
    schema = SmokeFamily.schema()
    devices = [
        DeviceConfig(dev, "smoke", BUS, validate({"address": addr}, schema, "gw.toml", dev))
        for dev, addr in detectors.items()
    ]
    return SerialDriver(BusConfig(BUS, "serial", bus), devices, ctx)


def receiver_state(ctx: RecordingContext) -> dict[str, Any]:
    state: dict[str, Any] = ctx.states.get(ctx.gateway_id, {}).get(f"receiver.{BUS}", {})
    return state


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(driver: SerialDriver, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(), name="driver")
    try:
        await wait_until(lambda: receiver_state(ctx).get("online") is True or task.done())
        yield task
    finally:
        if task.done():
            task.result()  # surface the driver's own failure rather than a timeout
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def link(tmp_path: Path) -> str:
    return str(tmp_path / "srb433")


# -- reception ---------------------------------------------------------------------------------


def test_alarm_sent_three_times_is_one_event(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, spacing=0.03) as rx:
            det = rx.detector("1A2B3C4D")
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                await det.alarm(density=90)
                await det.heartbeat(battery_mv=2950, rssi_dbm=-71)  # frames arrive in order
                await ctx.wait_for("smoke.heartbeat")
            alarms = ctx.of_type("smoke.alarm")
            assert len(alarms) == 1
            assert (alarms[0].device, alarms[0].severity) == ("smoke-101", "critical")
            assert alarms[0].data["density"] == 90
            assert alarms[0].data["address"] == "1A2B3C4D"
            state = ctx.states["smoke-101"]
            assert (state["alarm"], state["density"], state["battery_mv"]) == ("smoke", 90, 2950)
            assert state["rssi_dbm"] == -71
            assert ("smoke-101", {"battery_mv": 2950, "rssi_dbm": -71}) in ctx.telemetry

    asyncio.run(scenario())


def test_datasheet_frame_over_the_wire(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link) as rx:
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                for _ in range(3):
                    rx.write(DATASHEET_EXAMPLE)
                await ctx.wait_for("smoke.alarm")
                await asyncio.sleep(0.2)
            [alarm] = ctx.of_type("smoke.alarm")
            assert dict(alarm.data) == {"address": "1A2B3C4D", "seq": 7, "density": 0x5A}

    asyncio.run(scenario())


@parametrize_by_fixture("srb433", "detector")
def test_a_models_recording_reaches_the_gateway_as_its_events(link: str, fixture: Fixture) -> None:
    """Every frame recorded from a detector model (tests/fixtures/srb433), three times each as
    the radio sends it, through the pty: one event each, as recorded, and the state they add
    up to."""
    frames = fixture["frames"]

    async def scenario() -> None:
        async with ReceiverEmulator(link) as rx:
            ctx = RecordingContext()
            async with running(make_driver(link, ctx, {"smoke-1": frames[0]["device"]}), ctx):
                for frame in frames:
                    for _ in range(3):
                        rx.write(unhex(frame["hex"]))
                await wait_until(lambda: len(smoke_events(ctx)) >= len(frames))
                await asyncio.sleep(0.2)  # a repeat taken for a new event would show by now
            got = [(e.device, e.type, e.severity, dict(e.data)) for e in smoke_events(ctx)]
            assert got == [
                ("smoke-1", f["event"]["type"], f["event"]["severity"], f["event"]["data"])
                for f in frames
            ]
            # The retained state: what the frames recorded, later frames winning; the times
            # ("<ts>") are when each was heard, which only the driver knows.
            expected = {k: v for f in frames for k, v in f["state"].items()}
            state = ctx.states["smoke-1"]
            assert set(state) == {"last_seen", *expected}
            assert {k: state[k] for k, v in expected.items() if v != TS} == {
                k: v for k, v in expected.items() if v != TS
            }
            assert all(0 < state[k] <= state["last_seen"] for k, v in expected.items() if v == TS)

    asyncio.run(scenario())


def smoke_events(ctx: RecordingContext) -> list[Any]:
    return [e for e in ctx.events if e.type.startswith("smoke.")]


@parametrize_by_fixture("srb433", "receiver")
def test_a_receivers_recorded_frames_are_its_state_and_pairings(
    link: str, fixture: Fixture
) -> None:
    """A receiver of the recorded firmware (rev A or rev B) is reported with it; its recorded
    status and pairing frames become the receiver state and ``gateway.detector_paired``."""
    answers = [r for ex in fixture["exchanges"] for r in ex["receiver"]]
    pairings = [r for r in answers if "event" in r]
    last_status = [r for r in answers if "state" in r][-1]

    async def scenario() -> None:
        async with ReceiverEmulator(link, firmware=fixture["firmware"]) as rx:
            ctx = RecordingContext()
            async with running(make_driver(link, ctx, ping_seconds=600), ctx):
                assert receiver_state(ctx)["firmware"] == fixture["firmware"]
                for frame in [*pairings, last_status]:
                    rx.write(unhex(frame["hex"]))
                got = await ctx.wait_for("gateway.detector_paired", count=len(pairings))
                await wait_until(lambda: receiver_state(ctx)["paired"] == last_status["state"]["paired"])
            assert [
                {"type": e.type, "severity": e.severity,
                 "data": {k: e.data[k] for k in ("address", "model")}}
                for e in got
            ] == [r["event"] for r in pairings]  # fmt: skip
            assert {k: receiver_state(ctx)[k] for k in ("firmware", "paired")} == last_status["state"]

    asyncio.run(scenario())


def test_smoke_that_persists_repeats_with_a_new_seq(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, spacing=0.01, alarm_repeat=0.25) as rx:
            det = rx.detector("CAFEBABE")
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                await det.alarm(200)
                alarms = await ctx.wait_for("smoke.alarm", count=2)
                await det.clear()
                await ctx.wait_for("smoke.cleared")
            assert [a.device for a in alarms] == ["smoke-102", "smoke-102"]
            assert alarms[1].data["seq"] == (alarms[0].data["seq"] + 1) & 0xFF
            assert ctx.states["smoke-102"]["alarm"] == "none"

    asyncio.run(scenario())


def test_noise_torn_and_corrupt_frames(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, spacing=0.01) as rx:
            det = rx.detector("1A2B3C4D")
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                await rx.noise_burst(300)
                await rx.bad_crc(Frame(0x01, 0x1A2B3C4D, 99, b"\xff"))
                await rx.stray(7)
                await rx.torn(Frame(0x05, 0x1A2B3C4D, 100, b"\x01"), pause=0.05, at=5)
                await rx.noise_burst(100)
                await det.fault(code=2)
                await ctx.wait_for("smoke.fault")
                # Link quality is published with the next ping, for installers to see.
                await wait_until(lambda: receiver_state(ctx).get("bad_crc", 0) >= 1)
            assert ctx.of_type("smoke.alarm") == []  # the corrupt one never became an alarm
            [tamper] = ctx.of_type("smoke.tamper")
            assert (tamper.severity, tamper.data["removed"]) == ("warning", True)
            [fault] = ctx.of_type("smoke.fault")
            assert fault.data["fault"] == "sensor_failure"

    asyncio.run(scenario())


def test_unknown_detector_reported_once(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, spacing=0.01) as rx:
            stranger = rx.detector("DEADBEEF")
            known = rx.detector("1A2B3C4D")
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                await stranger.alarm(80)
                await stranger.heartbeat()
                await stranger.tamper()
                await known.heartbeat()
                await ctx.wait_for("smoke.heartbeat")
            [unknown] = ctx.of_type("gateway.unknown_detector")
            assert unknown.device == ctx.gateway_id
            assert unknown.data["address"] == "DEADBEEF"
            assert unknown.data["first_type"] == "smoke.alarm"
            assert [e.device for e in ctx.events if e.kind == "smoke"] == ["smoke-101"]

    asyncio.run(scenario())


# -- receiver health -----------------------------------------------------------------------------


def test_receiver_offline_and_online_by_ping(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link) as rx:
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx):
                assert receiver_state(ctx)["firmware"] == 0x0102
                rx.answer_pings = False
                [offline] = await ctx.wait_for("gateway.receiver_offline")
                await asyncio.sleep(0.8)  # several more unanswered pings
                assert len(ctx.of_type("gateway.receiver_offline")) == 1
                assert receiver_state(ctx)["online"] is False
                rx.answer_pings = True
                # (the first "online" came at start: it ends an alarm from before a restart)
                await ctx.wait_for("gateway.receiver_online", count=2)
                assert receiver_state(ctx)["online"] is True
            assert (offline.device, offline.severity) == (ctx.gateway_id, "warning")
            assert offline.data["bus"] == BUS
            assert len(rx.host_frames) >= 4  # pings kept coming while it was silent

    asyncio.run(scenario())


def test_unplug_and_replug_resumes_without_restart(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, spacing=0.01) as rx:
            det = rx.detector("1A2B3C4D")
            ctx = RecordingContext()
            async with running(make_driver(link, ctx), ctx) as task:
                await det.heartbeat()
                await ctx.wait_for("smoke.heartbeat")
                await rx.unplug()
                await ctx.wait_for("gateway.receiver_offline")
                await asyncio.sleep(0.8)  # several failed reopen attempts
                assert not os.path.exists(link)
                assert not task.done()
                await rx.replug()
                await ctx.wait_for("gateway.receiver_online", count=2)  # at start, after replug
                await det.alarm(120)
                [alarm] = await ctx.wait_for("smoke.alarm")
                assert not task.done()
            assert alarm.data["density"] == 120
            assert len(ctx.of_type("gateway.receiver_offline")) == 1
            assert len(ctx.of_type("gateway.receiver_online")) == 2

    asyncio.run(scenario())


def test_missing_port_at_start_is_offline_then_found(link: str) -> None:
    async def scenario() -> None:
        ctx = RecordingContext()
        task = asyncio.create_task(make_driver(link, ctx).run())
        try:
            [offline] = await ctx.wait_for("gateway.receiver_offline")
            assert "cannot open" in offline.data["reason"]
            async with ReceiverEmulator(link, spacing=0.01) as rx:
                await ctx.wait_for("gateway.receiver_online", timeout=5)
                await rx.detector("CAFEBABE").test(passed=False)
                [test] = await ctx.wait_for("smoke.test")
                assert (test.device, test.severity) == ("smoke-102", "warning")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_transport_notices_its_path_now_names_another_device(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link) as first:
            transport = SerialTransport(link)
            transport.open()
            try:
                assert not transport.vanished()
                async with ReceiverEmulator() as second:
                    os.unlink(link)
                    os.symlink(second.slave_path, link)
                    assert transport.vanished()
            finally:
                transport.close()
            assert first.plugged

    asyncio.run(scenario())


# -- receiver commands -------------------------------------------------------------------------


def test_pair_hush_remove_bytes_and_effects(link: str) -> None:
    async def scenario() -> None:
        async with ReceiverEmulator(link, pair_scale=0.01) as rx:
            rx.detector("CAFEBABE")
            ctx = RecordingContext()
            driver = make_driver(link, ctx)
            async with running(driver, ctx):
                ping = host_frame(0x80, 0, rx.host_frames[0].seq)
                rx.queue_join("0BADCAFE", model=2)
                seq_pair = await driver.pair(60)
                seq_hush = await driver.hush_all()
                seq_remove = await driver.remove("CAFEBABE")
                await rx.wait_host_frame(0x83)
                [paired] = await ctx.wait_for("gateway.detector_paired")
            wire = bytes(rx.wire_in)
            assert ping in wire
            assert host_frame(0x81, 0, seq_pair, b"\x3c") in wire
            assert host_frame(0x82, 0, seq_hush) in wire
            assert host_frame(0x83, 0xCAFEBABE, seq_remove) in wire
            assert len({seq_pair, seq_hush, seq_remove}) == 3
            assert rx.hush_all_count == 1
            assert 0xCAFEBABE not in rx.paired
            assert 0x0BADCAFE in rx.paired
            assert paired.device == ctx.gateway_id
            assert {k: paired.data[k] for k in ("address", "model", "configured")} == {
                "address": "0BADCAFE",
                "model": 2,
                "configured": False,
            }

    asyncio.run(scenario())


def test_commands_refuse_bad_arguments_and_a_missing_receiver(link: str) -> None:
    async def scenario() -> None:
        ctx = RecordingContext()
        driver = make_driver(link, ctx)
        with pytest.raises(TransientError, match="not connected"):
            await driver.hush_all()
        with pytest.raises(DeviceError) as info:
            await driver.pair(0)
        assert info.value.code == "bad_args"
        with pytest.raises(DeviceError, match="not a detector id"):
            await driver.remove("XYZ")
        with pytest.raises(DeviceError, match="not a detector id"):
            await driver.remove(0)

    asyncio.run(scenario())


# -- configuration -----------------------------------------------------------------------------


def test_defaults_and_address_normalised(link: str) -> None:
    bus = validate({"port": link}, SerialDriver.bus_schema, "gw.toml", "buses")
    assert (bus["baudrate"], bus["ping_seconds"]) == (9600, 60.0)
    dev = validate({"address": "cafebabe"}, SmokeFamily.schema(), "gw.toml", "d")
    assert dev == {"address": "CAFEBABE", "room": ""}
    with pytest.raises(ConfigError, match="8 hex digits"):
        validate({"address": "1A2B3C"}, SmokeFamily.schema(), "gw.toml", "d")


def test_duplicate_address_is_a_config_error(link: str) -> None:
    with pytest.raises(ConfigError, match="unique address"):
        make_driver(link, RecordingContext(), {"a": "1A2B3C4D", "b": "1a2b3c4d"})
