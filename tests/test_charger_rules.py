"""The charging safety rules, pure: samples in, cuts and alarms out, the right port only."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from gatewayd.schema import validate
from rules.charger import FullRule, OverheatRule, OverpowerRule, SessionCapRule
from rules.charger_trips import ChargerTripRule
from rules.engine import Engine, Outcome, RaiseAlarm, Rule, World


def port(
    n: int,
    *,
    state: str = "charging",
    relay: bool = True,
    power: float = 200,
    temp: float | None = 30.0,
) -> dict[str, Any]:
    return {
        "port": n,
        "state": state,
        "relay": relay,
        "power_w": power,
        "temperature_c": temp,
        "sensor_fault": temp is None,
        "energy_wh": 10,
        "fault": "none",
    }


def ports_sample(
    ports: list[dict[str, Any]], cabinet: float = 30.0, device: str = "pile-1"
) -> Event:
    data = {"source": "ports", "ports": ports, "cabinet_c": cabinet, "status_bits": 0, "status": []}
    return Event(device, "charger.sample", data=data)


def summary_sample(hottest_port: int, hottest_c: float | None, device: str = "pile-1") -> Event:
    data = {
        "source": "summary",
        "hottest_port": hottest_port,
        "hottest_c": hottest_c,
        "charging": [hottest_port],
        "faulted": [],
        "total_power_w": 200,
        "status_bits": 0,
    }
    return Event(device, "charger.sample", data=data)


def world(now: float = 1000.0, alarms: dict[str, Alarm] | None = None, fire: bool = False) -> World:
    return World("gw", {}, alarms=alarms or {}, fire_mode=fire, now=now)


def cuts(out: Outcome | None) -> list[tuple[str, str, Any]]:
    assert out is not None
    return [(a.device, a.name, a.args.get("port")) for a in out.actions]


CATALOGUE = Engine.from_config({}).catalogue()


def raised(out: Outcome | None) -> list[tuple[str, str]]:
    """(type, severity) of each alarm raised; severity is the type's, from its rule."""
    assert out is not None
    return [(a.type, CATALOGUE[a.type].severity) for a in out.alarms if isinstance(a, RaiseAlarm)]


def test_defaults_are_what_the_installer_expects() -> None:
    assert validate({}, OverheatRule.schema, "gateway.toml", "rules.charger_overheat") == {
        "port_max_celsius": 60.0,
        "cabinet_max_celsius": 70.0,
        "cooled_celsius": 50.0,
    }
    assert validate({}, OverpowerRule.schema, "f", "p") == {"max_watts": 800.0, "seconds": 5.0}
    assert validate({}, FullRule.schema, "f", "p") == {"full_watts": 30.0, "float_minutes": 45.0}
    assert validate({}, SessionCapRule.schema, "f", "p") == {"max_hours": 10.0}


def test_hot_port_is_cut_at_once_and_only_that_port() -> None:
    rule = OverheatRule({})
    out = rule.on_event(ports_sample([port(1), port(2, temp=60.0), port(3, temp=59.9)]), world())
    assert cuts(out) == [("pile-1", "port_off", 2)]
    assert raised(out) == [("charger.overheat", "critical")]
    assert out is not None
    assert "60.0 °C" in out.actions[0].reason
    assert out.actions[0].origin == "charger_overheat"


def test_summary_alone_is_enough_to_cut_the_hottest_port() -> None:
    rule = OverheatRule({})
    assert cuts(rule.on_event(summary_sample(7, 61.5), world())) == [("pile-1", "port_off", 7)]


def test_a_cut_is_not_repeated_while_the_port_cools() -> None:
    rule = OverheatRule({})
    rule.on_event(ports_sample([port(2, temp=65.0)]), world(1000))
    # Still hot, relay reported open: nothing to do.
    assert (
        cuts(
            rule.on_event(
                ports_sample([port(2, temp=64.0, relay=False, power=0, state="disabled")]),
                world(1001),
            )
        )
        == []
    )
    # Still hot and still powered a moment later: the driver is on it; no flood of cuts.
    assert cuts(rule.on_event(ports_sample([port(2, temp=65.0)]), world(1005))) == []
    # Still powered half a minute later: ask again.
    assert cuts(rule.on_event(ports_sample([port(2, temp=65.0)]), world(1031))) == [
        ("pile-1", "port_off", 2)
    ]


@pytest.mark.parametrize("temp", [None, -45.0])
def test_broken_sensor_is_a_warning_not_a_fire(temp: float | None) -> None:
    rule = OverheatRule({})
    out = rule.on_event(ports_sample([port(4, temp=temp)]), world())
    assert cuts(out) == []
    assert raised(out) == [("charger.sensor_fault", "warning")]
    assert raised(rule.on_event(ports_sample([port(4, temp=temp)]), world())) == []  # once
    assert cuts(rule.on_event(summary_sample(4, None), world())) == []


def test_hot_cabinet_cuts_every_port() -> None:
    out = OverheatRule({}).on_event(ports_sample([port(1)], cabinet=71.0), world())
    assert cuts(out) == [("pile-1", "all_off", None)]
    assert raised(out) == [("charger.cabinet_overheat", "critical")]


def test_pile_trip_raises_the_overheat_alarm() -> None:
    event = Event(
        "pile-1", "charger.port_fault", "critical", {"port": 5, "fault": "over_temperature"}
    )
    out = OverheatRule({}).on_event(event, world())
    assert cuts(out) == []  # the pile opened it itself
    assert raised(out) == [("charger.overheat", "critical")]


def test_permit_refuses_reclosing_an_overheated_port_until_reset() -> None:
    rule, trips = OverheatRule({}), ChargerTripRule({})
    out = rule.on_event(ports_sample([port(2, temp=66.0)]), world())
    assert out is not None
    alarm = out.alarms[0]
    assert isinstance(alarm, RaiseAlarm) and alarm.part == "2"
    active = {
        alarm_id("pile-1", alarm.type): Alarm(
            alarm_id("pile-1", alarm.type), "pile-1", alarm.type, "critical", 1000,
            data=alarm.data, latched=True, parts={"2": True},
        )
    }  # fmt: skip
    on2 = Action("pile-1", "port_on", {"port": 2}, origin="command:li")
    on3 = Action("pile-1", "port_on", {"port": 3}, origin="command:li")
    assert "charger.overheat" in (trips.permit(on2, world(alarms=active)) or "")
    assert trips.permit(on3, world(alarms=active)) is None
    assert trips.permit(Action("pile-1", "port_off", {"port": 2}), world(alarms=active)) is None
    assert trips.permit(on2, world()) is None  # a person reset it


def test_overpower_needs_five_seconds() -> None:
    rule = OverpowerRule({})
    assert cuts(rule.on_event(ports_sample([port(1, power=900), port(2)]), world(100))) == []
    assert cuts(rule.on_event(Event("gateway", TICK), world(104.9))) == []
    out = rule.on_event(Event("gateway", TICK), world(105))
    assert cuts(out) == [("pile-1", "port_off", 1)]
    assert raised(out) == [("charger.overpower", "warning")]
    # A spike that falls back in time is left alone.
    rule2 = OverpowerRule({})
    rule2.on_event(ports_sample([port(1, power=900)]), world(100))
    rule2.on_event(ports_sample([port(1, power=300)]), world(103))
    assert cuts(rule2.on_event(Event("gateway", TICK), world(110))) == []


def tick_until(rule: Rule, start: float, end: float) -> list[tuple[str, str, int | None]]:
    """Ticks every minute from ``start`` to ``end`` as the daemon's clock would advance
    (a jump of minutes between two of them would be a clock step); returns the cuts."""
    found: list[tuple[str, str, int | None]] = []
    t = start
    while t < end:
        t = min(end, t + 60)
        found += cuts(rule.on_event(Event("gateway", TICK), world(t)))
    return found


def test_full_battery_is_cut_after_the_float_period_once() -> None:
    rule = FullRule({})
    rule.on_event(ports_sample([port(1, state="full", power=20), port(2, power=200)]), world(0))
    assert tick_until(rule, 0, 44 * 60) == []
    assert tick_until(rule, 44 * 60, 45 * 60) == [("pile-1", "port_off", 1)]
    assert tick_until(rule, 45 * 60, 46 * 60) == []


def test_float_timer_restarts_when_the_battery_draws_again() -> None:
    rule = FullRule({"float_minutes": 10})
    rule.on_event(ports_sample([port(1, state="full", power=20)]), world(0))
    tick_until(rule, 0, 240)
    rule.on_event(ports_sample([port(1, power=120)]), world(300))
    rule.on_event(ports_sample([port(1, state="full", power=20)]), world(400))
    assert tick_until(rule, 400, 900) == []
    assert tick_until(rule, 900, 1000) == [("pile-1", "port_off", 1)]


def test_session_cap() -> None:
    rule = SessionCapRule({})
    rule.on_event(Event("pile-1", "charger.port_started", data={"port": 3}), world(0))
    rule.on_event(ports_sample([port(3, power=200)]), world(10))
    assert tick_until(rule, 10, 10 * 3600 - 1) == []
    out = rule.on_event(Event("gateway", TICK), world(10 * 3600))
    assert cuts(out) == [("pile-1", "port_off", 3)]
    assert out is not None
    assert "10.0 h" in out.actions[0].reason


def test_a_clock_step_neither_cuts_nor_spares_a_session() -> None:
    rule = SessionCapRule({})
    rule.on_event(Event("pile-1", "charger.port_started", data={"port": 3}), world(100))
    rule.on_event(ports_sample([port(3, power=200)]), world(110))
    tick_until(rule, 110, 3600)  # an hour of charging on a clock that says 1970
    assert cuts(rule.on_event(Event("gateway", TICK), world(1_763_798_400.0))) == []  # NTP
    assert tick_until(rule, 1_763_798_400.0, 1_763_798_400.0 + 8.9 * 3600) == []
    assert tick_until(rule, 1_763_798_400.0 + 8.9 * 3600, 1_763_798_400.0 + 9.1 * 3600) == [
        ("pile-1", "port_off", 3)  # ten hours of charging in all, as a person would count
    ]


def test_engine_loads_the_rules_from_their_entry_points() -> None:
    engine = Engine.from_config({})
    names = {r.name for r in engine.rules}
    assert {"charger_overheat", "charger_overpower", "charger_full", "charger_session_cap"} <= names
    out = engine.handle(ports_sample([port(9, temp=70.0)]), world())
    assert cuts(out) == [("pile-1", "port_off", 9)]
