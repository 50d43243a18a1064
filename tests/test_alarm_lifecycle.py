"""The alarm lifecycle, pure: the book's states, and the built-in rules driving it as the
runtime does (events in; actions, alarm changes and refusals out). The same stories run end
to end against the emulators in tests/test_safety_state_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayd.alarms import FIRE_MODE, AlarmBook, Refusal
from gatewayd.driver import DeviceConfig
from gatewayd.model import TICK, Action, Event
from rules.engine import ClearAlarm, Engine, Outcome, World


class House:
    """The built-in rules over a book, fed like the runtime feeds them."""

    def __init__(self) -> None:
        self.engine = Engine.from_config({})
        self.book = AlarmBook("gw", self.engine.catalogue())
        devices = {
            "pile-1": DeviceConfig("pile-1", "charger", "rs485", {}),
            "smoke-301": DeviceConfig("smoke-301", "smoke", "rx", {"room": "301"}),
            "smoke-302": DeviceConfig("smoke-302", "smoke", "rx", {"room": "302"}),
            "door-main": DeviceConfig("door-main", "door_lock", "ble", {"escape_route": True}),
        }
        self.world = World("gw", devices, {}, self.book.alarms, False, now=1000.0)

    def feed(self, event: Event) -> Outcome:
        self.world.now = event.ts
        self.world.fire_mode = self.book.fire_mode
        out = self.engine.handle(event, self.world)
        for change in out.alarms:
            if isinstance(change, ClearAlarm):
                self.book.clear(change.device, change.type, change.part, now=event.ts)
            else:
                self.book.raise_(change.device, change.type, change.data, change.part, event.ts)
        self.world.fire_mode = self.book.fire_mode
        return out

    def permit(self, action: Action) -> str | None:
        return self.engine.permit(action, self.world)

    def reset(self, aid: str) -> None:
        alarm = self.book.check_reset(aid)
        refused = self.engine.permit_reset(alarm, self.world)
        if refused:
            raise Refusal("forbidden", refused)
        self.book.reset(aid)


def ports(*readings: tuple[int, float, bool]) -> Event:
    """A ports sample of pile-1: (port, °C, relay closed)."""
    return Event(
        "pile-1",
        "charger.sample",
        data={
            "source": "ports",
            "ports": [
                {"port": p, "state": "charging" if on else "disabled", "relay": on,
                 "power_w": 200 if on else 0, "temperature_c": t, "fault": "none"}
                for p, t, on in readings
            ],
            "cabinet_c": 30.0,
            "status_bits": 0,
        },
        ts=1000.0,
    )  # fmt: skip


def smoke(device: str, type_: str = "smoke.alarm", ts: float = 1000.0) -> Event:
    data: dict[str, Any] = {"density": 90} if type_ == "smoke.alarm" else {}
    return Event(device, type_, "critical", data, ts=ts)


PORT_ON_3 = Action("pile-1", "port_on", {"port": 3}, origin="command:landlord")
HEAT = "pile-1/charger.overheat"


def test_book_states_raise_ack_reraise_clear_reset() -> None:
    book = AlarmBook("gw", Engine.from_config({}).catalogue())
    first = book.raise_("pile-1", "charger.overheat", {"port": 3}, part="3", now=10)
    assert first is not None and first.active and not first.acked and first.count == 1
    book.ack(HEAT, "grid-3", now=11)
    # The same port still hot (a re-cut): same occurrence, stays acknowledged.
    assert book.raise_("pile-1", "charger.overheat", {"port": 3}, part="3", now=12) is None
    assert book.alarms[HEAT].acked_by == "grid-3"
    # Another port: news. Unacknowledged again, one more occurrence, both parts active.
    again = book.raise_("pile-1", "charger.overheat", {"port": 7}, part="7", now=13)
    assert again is not None and again.acked_by is None and again.count == 2
    assert again.active_parts == ["3", "7"]
    book.clear("pile-1", "charger.overheat", "3", now=14)
    assert book.alarms[HEAT].active  # port 7 is still hot
    with pytest.raises(Refusal, match=r"still active \(port 7\)"):
        book.check_reset(HEAT)
    book.clear("pile-1", "charger.overheat", "7", now=15)
    cleared = book.alarms[HEAT]
    assert not cleared.active and cleared.cleared_at == 15  # latched: awaits a reset
    assert cleared.to_json()["state"] == "cleared"
    book.reset(HEAT)
    assert HEAT not in book.alarms
    # A condition-cleared type leaves by itself and cannot be reset by hand.
    book.raise_("smoke-301", "smoke.missing", {})
    with pytest.raises(Refusal, match="clears when the detector is heard again"):
        book.check_reset("smoke-301/smoke.missing")
    book.clear("smoke-301", "smoke.missing")
    assert "smoke-301/smoke.missing" not in book.alarms


def test_overheat_clears_after_cooling_and_a_reset_then_port_on_is_allowed() -> None:
    """Defect 1: an overheat alarm could never leave, and the port stayed forbidden."""
    house = House()
    out = house.feed(ports((3, 66.0, True)))
    assert [(a.name, a.args.get("port")) for a in out.actions] == [("port_off", 3)]
    house.book.ack(HEAT, "landlord")
    assert "awaiting" not in (house.permit(PORT_ON_3) or "") and house.permit(PORT_ON_3)
    house.feed(ports((3, 58.0, False)))  # cut, still warm
    with pytest.raises(Refusal):
        house.reset(HEAT)
    house.feed(ports((3, 44.0, False)))  # cooled
    assert "awaiting reset" in (house.permit(PORT_ON_3) or "")
    house.reset(HEAT)
    assert house.permit(PORT_ON_3) is None
    assert house.book.alarms == {}


def test_an_acknowledged_overheat_hides_nothing_new() -> None:
    """Defect 2: a second port, a welded relay, a failed cut each raise or re-raise."""
    house = House()
    house.feed(ports((3, 66.0, True)))
    house.book.ack(HEAT, "landlord")
    house.feed(ports((3, 64.0, False), (7, 61.0, True)))
    heat = house.book.alarms[HEAT]
    assert heat.acked_by is None and heat.active_parts == ["3", "7"]  # unacked again
    house.feed(Event("pile-1", "charger.relay_welded", "critical", {"port": 7}, ts=1001))
    welded = house.book.alarms["pile-1/charger.relay_welded"]
    assert welded.severity == "critical" and welded.latched and welded.active_parts == ["7"]
    house.feed(
        Event(
            "pile-1", "gateway.action_failed", "warning",
            {"action": "port_off", "args": {"port": 9}, "rule": "charger_overheat"}, ts=1002,
        )
    )  # fmt: skip
    failed = house.book.alarms["pile-1/charger.cut_failed"]
    assert failed.severity == "critical" and failed.active_parts == ["9"]
    # The relays reported open end both conditions; each still waits for a person.
    house.feed(ports((3, 40.0, False), (7, 40.0, False), (9, 30.0, False)))
    assert not house.book.alarms["pile-1/charger.relay_welded"].active
    assert not house.book.alarms["pile-1/charger.cut_failed"].active
    assert house.permit(Action("pile-1", "port_on", {"port": 9})) is not None


def test_fire_reset_is_refused_while_a_detector_still_reports_smoke() -> None:
    """Defect 3: the reset relocked the escape door during a live fire."""
    house = House()
    out = house.feed(smoke("smoke-301"))
    assert house.book.fire_mode
    assert {a.name for a in out.actions} == {"all_off", "hold_open"}
    house.feed(smoke("smoke-302", ts=1001))  # a second detector: news under the fire alarm
    fire_id = house.book.fire_id
    assert house.book.alarms[fire_id].active_parts == ["smoke-301", "smoke-302"]
    with pytest.raises(Refusal) as refused:
        house.reset(fire_id)
    assert refused.value.code == "forbidden"
    assert "smoke-301" in refused.value.detail and "smoke-302" in refused.value.detail
    house.feed(smoke("smoke-301", "smoke.cleared", ts=1002))
    with pytest.raises(Refusal, match="smoke-302"):
        house.reset(fire_id)
    house.feed(smoke("smoke-302", "smoke.cleared", ts=1003))
    house.reset(fire_id)
    assert not house.book.fire_mode
    relock = house.feed(Event("gw", "gateway.fire_reset", "warning", {}, ts=1004))
    [lock] = relock.actions
    assert (lock.device, lock.name, lock.persist, dict(lock.expect)) == (
        "door-main", "lock", "until_done", {"lock": "locked"},
    )  # fmt: skip


def test_fire_whose_detector_went_quiet_during_a_restart_can_be_reset() -> None:
    """A "cleared" frame lost (or sent while the gateway was down) must not make fire mode
    impossible to reset: an alarm not repeated for alarm_silence_seconds is over."""
    house = House()
    house.feed(smoke("smoke-301"))
    house.engine = Engine.from_config({})  # a restart: the rules remember nothing
    house.feed(Event("gw", TICK, ts=1010))
    with pytest.raises(Refusal):
        house.reset(house.book.fire_id)
    out = house.feed(Event("gw", TICK, ts=1010 + 151))
    assert [e.type for e in out.events] == ["smoke.alarm_ended"]
    house.feed(Event("gw", TICK, ts=1010 + 152))  # the fire rule sees the detector is quiet
    assert not house.book.alarms[house.book.fire_id].active
    house.reset(house.book.fire_id)
    assert not house.book.fire_mode


def test_fire_mode_is_the_fire_alarm() -> None:
    house = House()
    house.feed(smoke("smoke-301"))
    fire = house.book.alarms[house.book.fire_id]
    assert (fire.type, fire.latched, fire.severity) == (FIRE_MODE, True, "critical")
    assert house.permit(Action("door-main", "lock")) is not None
    assert house.permit(PORT_ON_3) is not None


def test_in_fire_an_unlock_follows_what_the_lock_reports() -> None:
    """A door the fire holds open: its unlock is refused as what it is (open already), not
    answered "ok" with nothing changed. A door that failed to release may still be unlocked:
    that lets people out. Outside fire mode an unlock is a rule's business no more."""
    house = House()
    unlock = Action("door-main", "unlock", {"seconds": 5})
    house.world.states["door-main"] = {"lock": "locked"}
    assert house.permit(unlock) is None
    house.feed(smoke("smoke-301"))
    assert house.world.fire_mode
    assert house.permit(unlock) is None  # not released (yet, or it failed): opening helps
    house.world.states["door-main"] = {"lock": "held_open"}
    assert house.permit(unlock) == (
        "fire mode: the door is held open already and stays open until the fire is reset"
    )
    assert house.permit(Action("door-main", "lock")) is not None
