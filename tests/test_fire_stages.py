"""The two stages of a fire, pure (rules/fire.py over the alarm book, fed as the runtime feeds
them): what starts it, what confirms it, what never does, and what a restart does again."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayd.alarms import AlarmBook
from gatewayd.driver import DeviceConfig
from gatewayd.model import TICK, Event
from rules.engine import Engine, Outcome
from tests.test_alarm_lifecycle import House, smoke


def staged(rules: dict[str, Any] | None = None) -> House:
    house = House()
    house.engine = Engine.from_config({"fire": rules or {}})
    house.book = AlarmBook("gw", house.engine.catalogue())
    house.world.alarms = house.book.alarms
    house.world.devices = {
        **house.world.devices,
        "smoke-bike": DeviceConfig("smoke-bike", "smoke", "rx", {"room": "车棚", "model": "SHD-20"}),
        "door-back": DeviceConfig("door-back", "door_lock", "ble", {"escape_route": True}),
    }
    return house


def names(out: Outcome) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for a in out.actions:
        found.setdefault(a.name, set()).add(a.device)
    return found


def confirmed(out: Outcome) -> dict[str, Any] | None:
    [event] = [e for e in out.events if e.type == "gateway.fire_confirmed"] or [None]
    return None if event is None else dict(event.data)


def stage(house: House) -> str:
    return str(house.book.alarms[house.book.fire_id].data["stage"])


def test_one_alarm_cuts_and_sounds_and_leaves_the_doors_locked() -> None:
    house = staged()
    out = house.feed(smoke("smoke-301"))
    assert names(out) == {"all_off": {"pile-1"}, "sound": {"smoke-301", "smoke-302", "smoke-bike"}}
    assert [e.type for e in out.events] == ["gateway.fire_mode"]
    assert stage(house) == "alarm"


def test_the_same_detector_repeating_or_replayed_never_confirms() -> None:
    house = staged()
    house.feed(smoke("smoke-301"))
    for i in range(1, 11):  # ten repeats (new SEQs), some outside the window too
        out = house.feed(smoke("smoke-301", ts=1000 + 30 * i))
        assert not out.actions and confirmed(out) is None
    assert stage(house) == "alarm"


@pytest.mark.parametrize(
    ("event", "by", "what"),
    [
        (smoke("smoke-302", ts=1050), "smoke.alarm", "smoke"),
        (Event("smoke-bike", "smoke.heat_alarm", "critical", {"temperature_c": 70}, ts=1050),
         "smoke.heat_alarm", "heat"),
        (Event("pile-1", "charger.status", "critical", {"set": ["smoke_input"]}, ts=1050),
         "charger.status", "the pile's smoke input"),
        (Event("pile-1", "charger.port_cut", "warning",
               {"ports": [3], "origin": "charger_overheat", "reason": "62 °C"}, ts=1050),
         "charger.port_cut", "a charger overheat cut"),
    ],
)  # fmt: skip
def test_a_second_independent_signal_confirms_and_says_which(
    event: Event, by: str, what: str
) -> None:
    house = staged()
    house.feed(smoke("smoke-301"))
    out = house.feed(event)
    assert names(out)["hold_open"] == {"door-main", "door-back"}
    said = confirmed(out)
    assert said is not None
    assert (said["by"], said["device"], said["what"], said["first"]) == (
        by, event.device, what, "smoke-301",
    )  # fmt: skip
    assert said["after_seconds"] == 50
    assert stage(house) == "confirmed"
    assert not house.feed(smoke("smoke-302", ts=1060)).actions  # released once


def test_a_signal_outside_the_window_does_not_confirm_but_a_still_reporting_one_does() -> None:
    house = staged({"confirm_window_seconds": 60})
    house.feed(Event("pile-1", "charger.port_cut", "warning",
                     {"ports": [3], "origin": "charger_overheat"}, ts=900))  # fmt: skip
    assert not house.book.fire_mode  # an overheat cut alone is the charger rules' business
    out = house.feed(smoke("smoke-301", ts=1000))  # 100 s later: not the same fire
    assert confirmed(out) is None
    # smoke-301 has gone quiet for 5 minutes, but its fire is still on (its part is active).
    late = house.feed(smoke("smoke-302", ts=1300))
    assert confirmed(late) is not None and confirmed(late)["first"] == "smoke-301"


def test_an_overheat_cut_just_before_the_alarm_confirms_it_at_once() -> None:
    house = staged()
    house.feed(Event("pile-1", "charger.port_cut", "warning",
                     {"ports": [3], "origin": "charger_overheat"}, ts=990))  # fmt: skip
    out = house.feed(smoke("smoke-301", ts=1000))
    assert {"all_off", "sound", "hold_open"} <= set(names(out))
    assert confirmed(out) is not None and stage(house) == "confirmed"


def test_a_person_confirms() -> None:
    house = staged()
    house.feed(smoke("smoke-301"))
    req = {"alarm": house.book.fire_id, "user": "landlord-li", "source": "platform"}
    out = house.feed(Event("gw", "gateway.fire_confirm", "warning", req, ts=1010))
    assert names(out) == {"hold_open": {"door-main", "door-back"}}
    said = confirmed(out)
    assert said is not None and (said["by"], said["user"], said["device"]) == (
        "fire_confirm", "landlord-li", None,
    )  # fmt: skip
    assert stage(house) == "confirmed"


def test_any_alarm_releases_at_the_first_alarm() -> None:
    house = staged({"door_release": "any_alarm"})
    out = house.feed(smoke("smoke-301"))
    assert names(out)["hold_open"] == {"door-main", "door-back"}
    assert confirmed(out) is None and stage(house) == "alarm"


@pytest.mark.parametrize("was_confirmed", [False, True])
def test_a_restart_runs_again_the_stage_the_fire_had_reached(was_confirmed: bool) -> None:
    house = staged()
    house.feed(smoke("smoke-301"))
    if was_confirmed:
        house.feed(smoke("smoke-302", ts=1010))
    house.engine = Engine.from_config({})  # a restart: the rules remember nothing
    out = house.feed(Event("gw", TICK, ts=1020))
    expected = {"all_off", "sound"} | ({"hold_open"} if was_confirmed else set())
    assert set(names(out)) == expected
    # After a restart in alarm stage, a second detector still confirms.
    later = house.feed(smoke("smoke-bike", ts=1030))
    assert ("hold_open" in names(later)) is not was_confirmed


def test_the_reset_hushes_the_sounders_and_relocks_and_a_new_fire_starts_over() -> None:
    house = staged()
    house.feed(smoke("smoke-301"))
    house.feed(smoke("smoke-302", ts=1001))
    for dev in ("smoke-301", "smoke-302"):
        house.feed(smoke(dev, "smoke.cleared", ts=1002))
    house.reset(house.book.fire_id)
    out = house.feed(Event("gw", "gateway.fire_reset", "warning", {}, ts=1003))
    assert names(out) == {"lock": {"door-main", "door-back"},
                          "hush": {"smoke-301", "smoke-302", "smoke-bike"}}  # fmt: skip
    again = house.feed(smoke("smoke-302", ts=2000))
    assert "hold_open" not in names(again) and stage(house) == "alarm"


def test_sounding_is_asked_for_again_every_minute_while_the_fire_lasts() -> None:
    """A driver restarted mid-fire (a reload) forgets it was sounding: the rule asks again,
    once each time (no retries piling up), and only for what wears off."""
    house = staged()
    house.feed(smoke("smoke-301"))
    assert not house.feed(Event("gw", TICK, ts=1001)).actions
    assert not house.feed(Event("gw", TICK, ts=1030)).actions
    again = house.feed(Event("gw", TICK, ts=1062))
    assert names(again) == {"sound": {"smoke-301", "smoke-302", "smoke-bike"}}
    assert {a.persist for a in again.actions} == {"once"}
    assert not house.feed(Event("gw", TICK, ts=1070)).actions
    house.feed(smoke("smoke-301", "smoke.cleared", ts=1080))
    house.reset(house.book.fire_id)
    house.feed(Event("gw", "gateway.fire_reset", "warning", {}, ts=1081))
    assert not house.feed(Event("gw", TICK, ts=1200)).actions
