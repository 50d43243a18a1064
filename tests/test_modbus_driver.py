"""The modbus driver against the EBC emulator over TCP on loopback and over an RTU pty line,
with the charger rules in the loop: what opened, what was reported, what was refused."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from firmware_stubs.ebc_replay import ReplayedPile
from gatewayd.driver import BusConfig
from gatewayd.errors import ConfigError, DeviceError
from gatewayd.model import Action
from rules.charger import FullRule, OverheatRule, OverpowerRule, SessionCapRule
from tests.charger_harness import RulesLoop, on_emulator, running
from tests.fixtures import parametrize_cases
from tests.fixtures.cases import ebc_snapshots

FAST = {"fast_seconds": 0.2, "slow_seconds": 2.0}


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def run(
    body: Callable[[EbcEmulator, dict[str, Any]], Awaitable[None]],
    piles: list[Pile],
    transport: str,
) -> None:
    on_emulator(body, piles, transport, FAST)


def summary_reads(emu: EbcEmulator, unit: int) -> list[float]:
    return [t for t, u, pdu in emu.trace if u == unit and pdu[:3] == b"\x04\x01\x00"]


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_overheated_port_is_cut_and_only_that_port(transport: str) -> None:
    piles = [Pile(unit=1), Pile(unit=2)]
    for p in piles:
        for n in (2, 3, 5):
            p.plug(n)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1, "pile-2": 2}):
            await loop.wait_for("charger.port_started", count=6)
            piles[1].heat_port(3, 65.0)
            cut = await loop.wait_for("charger.port_cut")
            await asyncio.sleep(0.5)
        assert [(e.device, e.data["ports"]) for e in loop.of_type("charger.port_cut")] == [
            ("pile-2", [3])
        ]
        assert "charger_overheat" in cut[0].data["reason"]
        assert cut[0].data["done"] == "relay_opened"
        assert not piles[1].port(3).relay
        assert all(p.port(n).relay for p in piles for n in range(1, 13) if (p.unit, n) != (2, 3))
        assert [(a.device, a.type, a.severity, a.data["port"]) for a in loop.alarms] == [
            ("pile-2", "charger.overheat", "critical", 3)
        ]
        assert loop.states["pile-2"]["ports"][2]["relay"] is False

    run(body, piles, transport)


def test_overpower_full_and_session_cap_cut_their_own_ports() -> None:
    pile = Pile(unit=1)
    pile.plug(1, soc=1.0)  # floating at 12 W: full
    pile.plug(2)  # charging at 240 W
    pile.plug(3)
    pile.overpower(3, 900)  # under the pile's own 1000 W trip, over the gateway's 800 W
    pile.plug(4)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        rules = [
            OverpowerRule({"seconds": 1.0}),
            FullRule({"float_minutes": 1.5 / 60}),
            SessionCapRule({"max_hours": 3.5 / 3600}),
        ]
        loop = RulesLoop(rules)
        async with running(loop, bus, {"pile-1": 1}):
            await loop.wait_for("charger.port_cut", count=4, timeout=10)
        by_port = {
            e.data["ports"][0]: e.data["reason"].split(":")[0]
            for e in loop.of_type("charger.port_cut")
        }
        assert by_port == {
            3: "charger_overpower",  # after 1 s over 800 W
            1: "charger_full",  # after 1.5 s floating
            2: "charger_session_cap",  # after 3.5 s
            4: "charger_session_cap",
        }
        assert [p.relay for p in pile.ports] == [False] * 4 + [True] * 8
        assert ("charger.overpower", "warning") in [(a.type, a.severity) for a in loop.alarms]

    run(body, [pile], "tcp")


def test_welded_relay_escalates_to_estop_and_a_critical_event() -> None:
    pile = Pile(unit=3)
    pile.plug(4)
    pile.weld_relay(4)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {"pile-3": 3}) as driver:
            await loop.wait_for("charger.port_started")
            with pytest.raises(DeviceError) as err:
                await driver.execute(
                    Action("pile-3", "port_off", {"port": 4}, reason="test: smoke in room")
                )
            assert err.value.code == "relay_welded"
        assert (6, 3, 0xA5A5) in [w[1:] for w in pile.writes]
        assert pile.port(4).relay  # still welded ...
        pile.advance(0.1)
        assert pile.port(4).power_w == 0  # ... but the pile's e-stop took the power away
        welded = loop.of_type("charger.relay_welded")
        assert [(e.severity, e.data["port"], e.data["estop"]) for e in welded] == [
            ("critical", 4, "written")
        ]
        assert loop.of_type("charger.port_cut")[0].data["done"] == "emergency_stop"

    run(body, [pile], "rtu")


def test_silent_pile_on_a_shared_line_does_not_hold_up_the_others() -> None:
    piles = [Pile(unit=u, ports_n=4) for u in (1, 2, 3, 4)]

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        # Piles at rest would be polled at the idle period: this is about the fast one.
        settings = {**bus, "fast_seconds": 0.3, "slow_seconds": 3.0, "idle_seconds": 0.3,
                    "breaker_max_seconds": 2.0}  # fmt: skip
        async with running(loop, settings, {f"pile-{u}": u for u in (1, 2, 3, 4)}) as driver:
            await wait_until(lambda: all(len(summary_reads(emu, u)) >= 2 for u in (1, 2, 3, 4)))
            piles[1].silent = True
            offline = await loop.wait_for("charger.offline", timeout=5)
            start = time.monotonic()
            await asyncio.sleep(4.0)
            window = (start, time.monotonic())
            probes = [t for t in summary_reads(emu, 2) if window[0] <= t <= window[1]]
            piles[1].silent = False
            back = time.time()
            await loop.wait_for("charger.online", timeout=5)
            stats = driver.link.stats
            figures, seen = driver.stats(), driver.last_seen()  # what the metrics endpoint gets
        assert [e.device for e in offline] == ["pile-2"]
        assert figures["timeouts_total"] == stats.timeouts and figures["requests_total"] > 40
        # The line was busy at least as long as the emulated wire carried frames, and the
        # probes of the silent pile (waiting out their timeouts) on top.
        assert emu.stats.busy_seconds / 60 <= figures["utilisation_ratio"] <= 1.0
        assert seen["pile-2"] >= back and all(time.time() - seen[f"pile-{u}"] < 1 for u in (1, 3))
        # One probe (one short timeout) per breaker period, the period capped at 2 s.
        assert 1 <= len(probes) <= 4
        probe_cost = 0.1 + 0.03  # suspect allowance + the summary frame's wire time
        for unit in (1, 3, 4):
            reads = [t for t in summary_reads(emu, unit) if window[0] <= t <= window[1]]
            intervals = [b - a for a, b in itertools.pairwise(reads)]
            assert len(reads) >= 10
            assert max(intervals) < 0.3 + probe_cost + 0.15, (unit, max(intervals))
        assert stats.timeouts >= 3

    run(body, piles, "rtu")


def test_coalesced_reads_cover_a_12_port_pile_in_the_minimum_requests() -> None:
    pile = Pile(unit=1, ports_n=12)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, {**bus, "slow_seconds": 60.0}, {"pile-1": 1}):
            await loop.wait_for("charger.sample", count=2)  # summary, then every port
            await asyncio.sleep(0.1)
        reads = [
            struct.unpack(">BHH", r[:5])
            for r in (pdu for _, _, pdu in emu.trace)
            if r[0] in (1, 3, 4)
        ]
        # Start-up identity read, the summary, then the whole map: pile block + 96 port
        # registers in two reads (the hole 7..15 is refused by the pile), relays in one.
        full = [r for r in reads if r != (4, 256, 6)]
        assert full[:4] == [(4, 0, 7), (4, 0, 7), (4, 16, 96), (1, 0, 12)]
        assert loop.states["pile-1"]["port_count"] == 12
        assert len(loop.states["pile-1"]["ports"]) == 12

    run(body, [pile], "tcp")


def test_failsafe_and_power_limit_are_written_at_start() -> None:
    pile = Pile(unit=7)
    assert pile.holding[2] == 1800

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        settings = {"failsafe_seconds": 120, "power_limit_watts": 900}
        async with running(loop, bus, {"pile-7": 7}, settings):
            await loop.wait_for("charger.sample")
        assert pile.holding[:3] == [900, 850, 120]

    run(body, [pile], "rtu")


def test_exceptions_and_garbled_replies_are_counted_and_survived() -> None:
    pile = Pile(unit=1, ports_n=4)
    pile.plug(2)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {"pile-1": 1}) as driver:
            await loop.wait_for("charger.port_started")
            pile.inject_fault(2, 3)  # short circuit: the pile opens it and refuses to close
            await loop.wait_for("charger.port_fault")
            with pytest.raises(DeviceError) as err:
                await driver.execute(Action("pile-1", "port_on", {"port": 2}))
            assert err.value.code == "port_fault"
            with pytest.raises(DeviceError) as bad:
                await driver.execute(Action("pile-1", "port_on", {"port": 9}))
            assert bad.value.code == "bad_port"
            pile.garble = True
            await wait_until(lambda: driver.link.stats.garbled >= 2)
            pile.garble = False
            sampled = len(loop.of_type("charger.sample"))
            pile.plug(3)
            await wait_until(lambda: len(loop.of_type("charger.sample")) > sampled)
            stats = driver.link.stats
        assert stats.exceptions == 1
        assert stats.garbled >= 2
        assert driver.stats()["errors_total"] == stats.exceptions + stats.garbled
        fault = loop.of_type("charger.port_fault")[0]
        assert (fault.severity, fault.data) == ("critical", {"port": 2, "fault": "short_circuit"})
        assert emu.stats.gap_violations == 0  # the driver kept the 3.5-character silence

    run(body, [pile], "rtu")


def test_emergency_stop_all_opens_every_relay_even_on_a_deaf_pile() -> None:
    piles = [Pile(unit=u, ports_n=6) for u in (1, 2, 3)]
    piles[2].ignore_broadcast = True
    for p in piles:
        p.plug(1)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {f"pile-{u}": u for u in (1, 2, 3)}) as driver:
            await loop.wait_for("charger.port_started", count=3)
            result = await driver.emergency_stop_all("fire: smoke-301")
        assert emu.stats.broadcasts == 1
        assert not any(port.relay for p in piles for port in p.ports)
        assert all(r["done"] == "written" and r["relays_closed"] == [] for r in result.values())
        cuts = loop.of_type("charger.port_cut")
        assert sorted(e.device for e in cuts) == ["pile-1", "pile-2", "pile-3"]
        assert all(
            e.data["reason"] == "fire: smoke-301" and e.data["how"] == "emergency_stop"
            for e in cuts
        )

    run(body, piles, "rtu")


def test_session_events_telemetry_and_state() -> None:
    pile = Pile(unit=1, ports_n=4)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {"pile-1": 1}):
            await loop.wait_for("charger.sample", count=2)
            pile.plug(2, soc=0.5)
            started = await loop.wait_for("charger.port_started")
            await wait_until(
                lambda: any(v.get("port") == 2 and v["power_w"] > 0 for _, v in loop.telemetry)
            )
            pile.unplug(2)
            stopped = await loop.wait_for("charger.port_stopped")
        assert started[0].data == {"port": 2}
        assert stopped[0].data == {"port": 2, "reason": "unplugged"}
        tele = next(v for _, v in loop.telemetry if v.get("port") == 2)
        assert set(tele) == {
            "port",
            "voltage_v",
            "current_a",
            "power_w",
            "energy_wh",
            "temperature_c",
        }
        state = loop.states["pile-1"]
        assert state["online"] is True
        assert state["firmware"] == "1.3"
        assert [p["state"] for p in state["ports"]] == ["idle"] * 4

    run(body, [pile], "tcp")


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@parametrize_cases("ebc", ebc_snapshots, "snap")
def test_a_recorded_register_dump_is_published_as_its_readings(
    snap: dict[str, Any], transport: str
) -> None:
    """A pile answering with a recorded dump (tests/fixtures/ebc): the retained state and the
    driver's samples say what the recording's readings say, port by port."""
    pile = ReplayedPile(snap)
    expected = snap["readings"]

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {"pile-1": 1}):
            await wait_until(lambda: len(loop.states.get("pile-1", {}).get("ports", [])) == pile.ports_n)
            samples = await loop.wait_for("charger.sample", count=2)
        state = loop.states["pile-1"]
        keys = ("port", "state", "relay", "power_w", "temperature_c", "fault")
        assert state["ports"] == [{k: p[k] for k in keys} for p in expected["ports"]]
        assert state["firmware"] == expected["pile"]["firmware"]
        assert state["mains_v"] == pytest.approx(expected["pile"]["mains_v"])
        assert (state["status_bits"], state["status"]) == (
            expected["pile"]["status_bits"], expected["pile"]["status"],
        )  # fmt: skip
        [summary] = [s.data for s in samples if s.data["source"] == "summary"][:1]
        assert {k: summary[k] for k in expected["summary"]} == expected["summary"]

    run(body, [pile], transport)


def test_bus_needs_exactly_one_of_port_and_host() -> None:
    for settings in ({}, {"port": "/dev/ttyUSB0", "host": "10.0.0.2"}):
        with pytest.raises(ConfigError, match="exactly one of port"):
            ModbusDriver(BusConfig("rs485", "modbus", settings), [], RulesLoop())
