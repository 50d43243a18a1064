"""The EFM-4 family against its emulator over an RTU pty and Modbus TCP, on the line it shares
with the piles, with the electrical rule in the loop: a leakage ramp alarms at the threshold
after the delay and stays latched until a person resets it; a broken sensor is a fault, never
0; trip on alarm trips with the coil read back; nothing re-closes a breaker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from efm_harness import house, on_line, until
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd.alarms.book import Refusal
from gatewayd.errors import DeviceError
from gatewayd.events import ALARM_RESET
from gatewayd.model import Action, Event, alarm_id
from gatewayd_efm.rules import ElectricalRule
from gatewayd_efm_stubs.efm4 import Efm4
from tests.charger_harness import RulesLoop

TRANSPORTS = ["rtu", "tcp"]
EFM = {"efm-9": 9}
LEAK = alarm_id("efm-9", "electrical.leakage_alarm")


def channel(loop: RulesLoop, n: int) -> dict[str, Any]:
    return next(c for c in loop.states["efm-9"]["channels"] if c["channel"] == n)


def reset(loop: RulesLoop, aid: str) -> None:
    """A person's reset, as the runtime does it: the rules' permit, the book, the event."""
    alarm = loop.book.get(aid)
    assert alarm is not None
    why = loop.engine.permit_reset(alarm, loop.world)
    if why:
        raise Refusal("forbidden", why)
    loop.book.reset(aid)
    loop.emit(Event("gw-test", ALARM_RESET, "warning",
                    {"alarm": aid, "type": alarm.type, "user": "landlord-17"}))  # fmt: skip


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_leakage_ramp_alarms_after_the_delay_latched_until_a_person_resets(transport: str) -> None:
    efm = Efm4(unit=9, delay=2)  # the detector's own alarm delay: 2 s

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([ElectricalRule({})])
        async with house(loop, bus, {}, EFM):
            await until(lambda: loop.states.get("efm-9", {}).get("channels"), what="a first read")
            for ma in (100, 200, 290):  # below the threshold (300 mA): nothing
                efm.set_value(1, ma)
                await until(lambda ma=ma: channel(loop, 1)["value"] == ma, what=f"{ma} mA")
            assert not loop.of_type("electrical.leakage_alarm")
            efm.set_value(1, 310)
            at = asyncio.get_running_loop().time()
            await until(lambda: channel(loop, 1)["value"] == 310, what="310 mA read")
            if asyncio.get_running_loop().time() - at < 2.0 - 0.2:  # within the detector's delay
                assert not loop.of_type("electrical.leakage_alarm")  # not before the delay
            (alarm,) = await loop.wait_for("electrical.leakage_alarm", timeout=5)
            waited = asyncio.get_running_loop().time() - at
            assert 2.0 - 0.2 <= waited < 2.0 + 1.0, waited  # the delay, then the next poll
            assert (alarm.severity, alarm.data["channel"], alarm.data["value"]) == (
                "critical",
                1,
                310,
            )
            assert alarm.data["threshold"] == 300 and alarm.data["unit"] == "mA"
            assert [(a.type, a.severity) for a in loop.alarms] == [
                ("electrical.leakage_alarm", "critical")
            ]
            assert loop.book.get(LEAK).latched
            with pytest.raises(Refusal, match="still"):
                reset(loop, LEAK)
            # The leakage falls back: the detector stays latched, and so does the alarm.
            efm.set_value(1, 40)
            await loop.wait_for("electrical.alarm_over")
            await asyncio.sleep(0.5)
            assert channel(loop, 1)["state"] == "alarm" and efm.channels[0].state == 1
            held = loop.book.get(LEAK)
            assert held is not None and not held.active  # over, awaiting a person
            reset(loop, LEAK)  # the person: accepted now
            await until(lambda: channel(loop, 1)["state"] == "normal", what="the detector reset")
            assert loop.book.get(LEAK) is None
            assert efm.coil_writes == []  # no trip asked for (trip_on_alarm is off)

    on_line(body, [efm], transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_broken_sensor_is_a_fault_never_a_value_of_0(transport: str) -> None:
    efm = Efm4(unit=9)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([ElectricalRule({})])
        async with house(loop, bus, {}, EFM):
            await until(lambda: loop.states.get("efm-9", {}).get("channels"), what="a first read")
            efm.break_wire(2)
            efm.break_wire(3, short=True)
            faults = await loop.wait_for("electrical.fault", count=2)
            assert sorted((e.data["channel"], e.data["fault"], e.severity) for e in faults) == [
                (2, "open_circuit", "warning"), (3, "short_circuit", "warning")]  # fmt: skip
            await until(lambda: channel(loop, 3)["state"] == "short_circuit", what="state")
            for n in (2, 3):
                assert channel(loop, n)["value"] is None and channel(loop, n)["peak"] is None
            sent = [v for d, v in loop.telemetry if d == "efm-9" and v["channel"] in (2, 3)]
            assert all(0 not in (v.get("leakage_ma"), v.get("temperature_c")) for v in sent[-4:])
            assert not loop.of_type("electrical.leakage_alarm")
            assert {a.type for a in loop.alarms} == {"electrical.fault"}
            efm.mend_wire(2)
            mended = await loop.wait_for("electrical.fault", count=3)
            assert (mended[-1].data["fault"], mended[-1].severity) == ("none", "info")
            fault = loop.book.get(alarm_id("efm-9", "electrical.fault"))
            assert fault is not None and fault.parts.get("3") and not fault.parts.get("2")

    on_line(body, [efm], transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_trip_on_alarm_trips_that_breaker_with_the_coil_read_back(transport: str) -> None:
    efm, other = Efm4(unit=9, delay=1), Efm4(unit=10, delay=1)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([ElectricalRule({"trip_on_alarm": True})])
        both = {**EFM, "efm-10": 10}
        async with house(loop, bus, {"pile-1": 1}, both):
            await until(lambda: loop.states.get("efm-9", {}).get("channels"), what="a first read")
            efm.set_value(3, 95.0)  # a terminal at 95 °C, threshold 80 °C
            (tripped,) = await loop.wait_for("electrical.tripped", timeout=15)
            assert (tripped.device, tripped.data["by"], tripped.data["verified"]) == (
                "efm-9", "gateway", True)  # fmt: skip
            assert "electrical.overtemp_alarm on channel 3" in tripped.data["reason"]
            assert efm.trip_output and efm.coil_writes == [True]
            result = next(r for a, r in loop.results if a.name == "trip")
            assert result == {"tripped": True, "verified": True, "attempts": 1}
            await until(lambda: loop.states["efm-9"]["tripped"] is True, what="state")
            assert other.coil_writes == [] and not other.trip_output  # only that detector
            assert [p.port(1).relay for p in emu.piles.values() if isinstance(p, Pile)] == [True]

    on_line(body, [efm, other], transport, piles=[Pile(unit=1, ports_n=4)])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_command_recloses_a_breaker(transport: str) -> None:
    efm = Efm4(unit=9)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        rule = ElectricalRule({})
        loop = RulesLoop([rule])
        async with house(loop, bus, {}, EFM) as driver:
            await until(lambda: loop.states.get("efm-9", {}).get("channels"), what="a first read")
            assert await driver.execute(Action("efm-9", "trip", reason="test")) == {
                "tripped": True, "verified": True, "attempts": 1}  # fmt: skip
            close = Action("efm-9", "close")
            assert loop.engine.permit(close, loop.world) == (
                "a tripped breaker is switched on by hand at the box; nothing re-closes it remotely"
            )
            with pytest.raises(DeviceError) as refused:
                await driver.execute(close)
            assert refused.value.code == "manual_only"
            # A reset clears the detector's latch and its trip reading; it closes nothing.
            assert (await driver.execute(Action("efm-9", "reset")))["reset"] == "written"
            assert efm.coil_writes == [True]  # never a 0: no write ever asked to close
            assert not efm.trip_output and efm.trips == 1

    on_line(body, [efm], transport)


def test_the_piles_broadcast_estop_leaves_the_detector_as_it_was() -> None:
    """The EBC e-stop broadcast writes 0xA5A5 to register 3: on an EFM-4 that is channel 4's
    threshold, out of range, so refused (exception 03, unsent for a broadcast)."""
    efm = Efm4(unit=9)
    piles = [Pile(unit=1, ports_n=4), Pile(unit=2, ports_n=4)]
    for p in piles:
        p.plug(1)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([ElectricalRule({})])
        async with house(loop, bus, {"pile-1": 1, "pile-2": 2}, EFM) as driver:
            await loop.wait_for("charger.port_started", count=2)
            before = (list(efm.thresholds), efm.delay, efm.self_trip, efm.self_test_left)
            await driver.emergency_stop_all("fire: test")
            assert emu.stats.broadcasts == 1
            assert [p.port(1).relay for p in piles] == [False, False]
            assert (list(efm.thresholds), efm.delay, efm.self_trip, efm.self_test_left) == before

    on_line(body, [efm], "rtu", piles=piles)
