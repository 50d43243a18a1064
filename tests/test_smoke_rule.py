"""The smoke rule, pure: events and ticks in, alarms and derived events out."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayd.driver import DeviceConfig
from gatewayd.model import TICK, Event
from gatewayd.schema import validate
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, World
from rules.smoke import SmokeRule

HOUR = 3600.0
T0 = 1_700_000_000.0


def make_world(*smoke: str, other: tuple[str, ...] = ()) -> World:
    devices = {d: DeviceConfig(d, "smoke", "house", {"address": "1A2B3C4D"}) for d in smoke}
    devices |= {d: DeviceConfig(d, "pile", "rs485", {}) for d in other}
    return World(gateway_id="gw", devices=devices)


def make_rule(**settings: Any) -> SmokeRule:
    return SmokeRule(validate(settings, SmokeRule.schema, "gateway.toml", "rules.smoke"))


def ev(device: str, type_: str, ts: float = T0, **data: Any) -> Event:
    return Event(device, type_, data=data, ts=ts)


def tick(rule: SmokeRule, world: World, now: float) -> Outcome:
    world.now = now
    return rule.on_event(Event("gw", TICK, ts=now), world) or Outcome()


def run_clock(
    rule: SmokeRule, world: World, start: float, end: float, step: float = 60.0
) -> Outcome:
    """Tick like the runtime does (often), gathering every outcome."""
    total = Outcome()
    now = start
    while now <= end:
        total.merge(tick(rule, world, now))
        now += step
    return total


def alarms(out: Outcome | None) -> list[RaiseAlarm | ClearAlarm]:
    return [] if out is None else out.alarms


def test_schema_defaults() -> None:
    rule = make_rule()
    assert rule.heartbeat == 3600
    assert rule.limit == 3 * 3600
    assert SmokeRule.name == "smoke"


def test_defaults_hold_even_without_validation() -> None:
    assert SmokeRule({}).limit == 3 * 3600


@pytest.mark.parametrize(
    ("type_", "data", "expected"),
    [
        (
            "smoke.alarm",
            {"density": 90},
            RaiseAlarm("smk", "smoke.alarm", {"density": 90}),
        ),
        (
            "smoke.heat_alarm",
            {"temperature_c": 70},
            RaiseAlarm("smk", "smoke.heat_alarm", {"temperature_c": 70}),
        ),
        (
            "smoke.low_battery",
            {"battery_mv": 2500},
            RaiseAlarm("smk", "smoke.low_battery", {"battery_mv": 2500}),
        ),
        (
            "smoke.fault",
            {"code": 1, "fault": "chamber_dirty"},
            RaiseAlarm("smk", "smoke.fault", {"fault": "chamber_dirty"}),
        ),
        (
            "smoke.tamper",
            {"removed": True},
            RaiseAlarm("smk", "smoke.tamper", {"removed": True}),
        ),
        ("smoke.tamper", {"removed": False}, ClearAlarm("smk", "smoke.tamper")),
        ("smoke.test", {"result": "fail"}, RaiseAlarm("smk", "smoke.test_failed")),
        (
            "smoke.test",
            {"result": "pass"},
            [ClearAlarm("smk", "smoke.test_failed"), ClearAlarm("smk", "smoke.fault")],
        ),
    ],
)
def test_detector_events_raise_and_clear(
    type_: str, data: dict[str, Any], expected: object
) -> None:
    out = make_rule().on_event(ev("smk", type_, **data), make_world("smk"))
    assert alarms(out) == (expected if isinstance(expected, list) else [expected])


def test_cleared_clears_smoke_and_heat() -> None:
    out = make_rule().on_event(ev("smk", "smoke.cleared"), make_world("smk"))
    assert alarms(out) == [ClearAlarm("smk", "smoke.alarm"), ClearAlarm("smk", "smoke.heat_alarm")]


@pytest.mark.parametrize("type_", ["smoke.heartbeat", "smoke.hushed"])
def test_informational_events_change_no_alarm(type_: str) -> None:
    out = make_rule().on_event(ev("smk", type_), make_world("smk"))
    assert alarms(out) == []


def test_hush_does_not_clear_an_alarm() -> None:
    rule, world = make_rule(), make_world("smk")
    rule.on_event(ev("smk", "smoke.alarm", density=200), world)
    out = rule.on_event(ev("smk", "smoke.hushed", T0 + 5), world)
    assert not any(isinstance(a, ClearAlarm) for a in alarms(out))


def test_other_kinds_are_ignored() -> None:
    assert make_rule().on_event(ev("pile-1", "pile.overcurrent"), make_world("smk")) is None


def test_missing_after_three_silent_periods() -> None:
    rule, world = make_rule(), make_world("smk", "quiet", other=("pile-1",))
    tick(rule, world, T0)  # first tick starts the clocks
    assert not run_clock(rule, world, T0 + 60, T0 + 3 * HOUR).events
    rule.on_event(ev("smk", "smoke.heartbeat", T0 + 2 * HOUR, battery_mv=3000, rssi_dbm=-60), world)

    out = run_clock(rule, world, T0 + 3 * HOUR + 60, T0 + 4 * HOUR)
    assert [(e.device, e.type, e.severity) for e in out.events] == [
        ("quiet", "smoke.missing", "warning")
    ]
    assert out.events[0].data["silent_seconds"] > 3 * HOUR
    assert alarms(out) == [
        RaiseAlarm("quiet", "smoke.missing", dict(out.events[0].data))
    ]
    # Reported once, not at every tick.
    assert not run_clock(rule, world, T0 + 4 * HOUR + 60, T0 + 5 * HOUR).events
    # The one that spoke two hours in goes missing three periods after that.
    late = run_clock(rule, world, T0 + 5 * HOUR + 60, T0 + 5 * HOUR + 600)
    assert [e.device for e in late.events] == ["smk"]


def test_restart_does_not_flag_everything() -> None:
    """A fresh rule (gateway restart) starts counting at its first tick, whatever the time."""
    rule, world = make_rule(), make_world("a", "b")
    assert not tick(rule, world, T0 + 100 * HOUR).events
    assert not run_clock(rule, world, T0 + 100 * HOUR, T0 + 103 * HOUR).events
    out = run_clock(rule, world, T0 + 103 * HOUR + 60, T0 + 103 * HOUR + 120)
    assert sorted(e.device for e in out.events) == ["a", "b"]


def test_detector_returns() -> None:
    rule, world = make_rule(heartbeat_seconds=600, missing_after_periods=2), make_world("smk")
    missing = run_clock(rule, world, T0, T0 + 1260)
    assert [e.type for e in missing.events] == ["smoke.missing"]

    out = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + 1300, battery_mv=3000, rssi_dbm=-70), world
    )
    assert out is not None
    assert [(e.device, e.type, e.severity) for e in out.events] == [
        ("smk", "smoke.returned", "info")
    ]
    assert alarms(out) == [ClearAlarm("smk", "smoke.missing")]
    # Back to normal: silent again for a while is fine, a second heartbeat says nothing new.
    again = rule.on_event(ev("smk", "smoke.heartbeat", T0 + 1400), world)
    assert again is not None
    assert not again.events


def test_alarm_from_missing_detector_returns_and_raises() -> None:
    rule, world = make_rule(heartbeat_seconds=600, missing_after_periods=1), make_world("smk")
    run_clock(rule, world, T0, T0 + 700)
    out = rule.on_event(ev("smk", "smoke.alarm", T0 + 710, density=150), world)
    assert out is not None
    assert [e.type for e in out.events] == ["smoke.returned"]
    assert ClearAlarm("smk", "smoke.missing") in out.alarms
    assert RaiseAlarm("smk", "smoke.alarm", {"density": 150}) in out.alarms


def test_derived_events_do_not_count_as_heard() -> None:
    rule, world = make_rule(heartbeat_seconds=600, missing_after_periods=1), make_world("smk")
    out = run_clock(rule, world, T0, T0 + 700)
    assert rule.on_event(out.events[0], world) is None  # smoke.missing fed back in
    assert "smk" in rule.missing


def test_clock_step_does_not_flag_everything() -> None:
    """A Pi without RTC boots with an old clock and NTP steps it forward by hours."""
    rule, world = make_rule(), make_world("smk")
    run_clock(rule, world, T0, T0 + 600)
    assert not tick(rule, world, T0 + 600 + 48 * HOUR).events
    out = run_clock(rule, world, T0 + 600 + 48 * HOUR, T0 + 600 + 51 * HOUR + 120)
    assert [e.type for e in out.events] == ["smoke.missing"]


def test_clock_stepping_back_does_not_hide_a_detector() -> None:
    rule, world = make_rule(heartbeat_seconds=600, missing_after_periods=1), make_world("smk")
    run_clock(rule, world, T0 + 10 * HOUR, T0 + 10 * HOUR + 60)
    # Back by ten hours: detection must still happen one window later, not ten hours later.
    out = run_clock(rule, world, T0, T0 + 700)
    assert [e.type for e in out.events] == ["smoke.missing"]


def test_receiver_offline_is_a_critical_alarm_until_it_answers_again() -> None:
    from gatewayd.model import Event
    from rules.engine import ClearAlarm, RaiseAlarm, World
    from rules.smoke import SmokeRule

    rule = SmokeRule({})
    world = World("gw", {})
    off = rule.on_event(
        Event("gw", "gateway.receiver_offline", "warning", {"bus": "smoke-rx"}), world
    )
    assert off is not None
    # One part per receiver: a house may have two, each offline on its own.
    assert off.alarms == [
        RaiseAlarm("gw", "gateway.receiver_offline", {"bus": "smoke-rx"}, part="smoke-rx")
    ]
    on = rule.on_event(Event("gw", "gateway.receiver_online", "info", {"bus": "smoke-rx"}), world)
    assert on is not None
    assert on.alarms == [ClearAlarm("gw", "gateway.receiver_offline", part="smoke-rx")]


def _with_low_battery_alarm(world: World, since: float, mv: int = 2500) -> None:
    from gatewayd.model import Alarm, alarm_id

    aid = alarm_id("smk", "smoke.low_battery")
    world.alarms = {
        aid: Alarm(aid, "smk", "smoke.low_battery", "warning", since, None, {"battery_mv": mv})
    }


def test_low_battery_clears_when_a_heartbeat_shows_a_new_battery() -> None:
    rule, world = make_rule(), make_world("smk")
    rule.on_event(ev("smk", "smoke.low_battery", battery_mv=2500), world)
    _with_low_battery_alarm(world, T0)
    same = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + HOUR, battery_mv=2550, rssi_dbm=-60), world
    )
    fresh = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + 2 * HOUR, battery_mv=3050, rssi_dbm=-60), world
    )
    assert same is not None and ClearAlarm("smk", "smoke.low_battery") not in same.alarms
    assert fresh is not None and ClearAlarm("smk", "smoke.low_battery") in fresh.alarms


def test_low_battery_clears_after_two_daily_checks_without_a_new_report() -> None:
    """The detector re-checks every 24 h and speaks only when low: two days and an hour of
    heartbeats with no report means the battery is fine; a report in between restarts that."""
    rule, world = make_rule(), make_world("smk")
    rule.on_event(ev("smk", "smoke.low_battery", battery_mv=2500), world)
    _with_low_battery_alarm(world, T0)
    cleared = []
    for h in range(1, 100):
        if h == 24:  # the daily check: still low
            rule.on_event(ev("smk", "smoke.low_battery", T0 + h * HOUR, battery_mv=2480), world)
        out = rule.on_event(
            ev("smk", "smoke.heartbeat", T0 + h * HOUR, battery_mv=2500, rssi_dbm=-60), world
        )
        if out is not None and ClearAlarm("smk", "smoke.low_battery") in out.alarms:
            cleared.append(h)
    assert cleared and cleared[0] == 24 + 49  # 49 h after the last report, not the first


def test_low_battery_after_a_restart_waits_a_full_recheck_from_the_first_heartbeat() -> None:
    rule, world = make_rule(), make_world("smk")  # a fresh rule: the report was before a restart
    _with_low_battery_alarm(world, T0 - 10 * 24 * HOUR)  # raised ten days ago, still active
    early = rule.on_event(ev("smk", "smoke.heartbeat", T0, battery_mv=2500, rssi_dbm=-60), world)
    late = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + 49 * HOUR, battery_mv=2500, rssi_dbm=-60), world
    )
    assert early is not None and ClearAlarm("smk", "smoke.low_battery") not in early.alarms
    assert late is not None and ClearAlarm("smk", "smoke.low_battery") in late.alarms


def test_a_clock_step_never_counts_as_days_of_quiet_for_a_low_battery() -> None:
    """A Pi without a clock hears the low report in 1970; NTP then steps to today. The step is
    not two days of heartbeats without a report: the count starts again at the step."""
    boot = 100.0
    rule, world = make_rule(), make_world("smk")
    tick(rule, world, boot)
    rule.on_event(ev("smk", "smoke.low_battery", boot, battery_mv=2500), world)
    _with_low_battery_alarm(world, boot)
    tick(rule, world, T0)  # NTP
    right_after = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + 60, battery_mv=2500, rssi_dbm=-60), world
    )
    later = rule.on_event(
        ev("smk", "smoke.heartbeat", T0 + 49 * HOUR, battery_mv=2500, rssi_dbm=-60), world
    )
    assert (
        right_after is not None and ClearAlarm("smk", "smoke.low_battery") not in right_after.alarms
    )
    assert later is not None and ClearAlarm("smk", "smoke.low_battery") in later.alarms
