"""The drill's own decisions, pure (gatewayd.drill over the real fire rule and families, with
the actions' results handed back as a driver would): a house with one detector is confirmed
by a person; a real fire that begins mid-drill stops it before it hushes or relocks anything;
one drill at a time; the running rule and the real alarm book are never touched."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from gatewayd.alarms import AlarmBook, Refusal
from gatewayd.drill import Drill
from gatewayd.driver import DeviceConfig
from gatewayd.model import Action, Event
from rules.engine import Engine, World

DEVICES = {
    "pile-1": DeviceConfig("pile-1", "charger", "rs485", {}),
    "smoke-301": DeviceConfig("smoke-301", "smoke", "rx", {"room": "301", "address": "1A2B3C4D"}),
    "door-main": DeviceConfig("door-main", "door_lock", "ble", {"escape_route": True}),
}


class Rig:
    """A drill wired as the runtime wires it, with what it published and carried out."""

    def __init__(self, devices: Mapping[str, DeviceConfig] = DEVICES) -> None:
        self.engine = Engine.from_config({})
        self.book = AlarmBook("gw", self.engine.catalogue())
        self.world = World("gw", dict(devices), {}, self.book.alarms, False)
        self.published: list[Event] = []
        self.carried: list[list[Action]] = []
        self.real_fire = False
        self.after_actions: Any = None  # called after each batch (a fire breaking out)
        self.drill = Drill(self.world, lambda: self.engine.fresh("fire"), self.engine.catalogue(),
                           lambda: self.real_fire, self.published.append, self.carry_out)  # fmt: skip

    async def carry_out(self, actions: list[Action]) -> list[Mapping[str, Any] | BaseException]:
        self.carried.append(actions)
        await asyncio.sleep(0)  # a driver answers later: another request may come meanwhile
        if self.after_actions is not None:
            self.after_actions()
        return [{"ok": True} for _ in actions]

    def run(self, actuate: bool = True) -> dict[str, Any]:
        return asyncio.run(self.drill.run(actuate, "li", "control", "monthly"))


def test_one_detector_is_confirmed_by_a_person_and_the_real_rule_learns_nothing() -> None:
    rig = Rig()
    [fire] = [r for r in rig.engine.rules if r.name == "fire"]
    summary = rig.run()
    assert [(s["phase"], s["by"], s["device"]) for s in summary["steps"]] == [
        ("alarm", "smoke.alarm", "smoke-301"),
        ("confirmed", "gateway.fire_confirm", None),
        ("reset", "gateway.fire_reset", None),
    ]
    assert [[(a.device, a.name, a.origin) for a in batch] for batch in rig.carried] == [
        [("pile-1", "all_off", "drill"), ("smoke-301", "sound", "drill")],
        [("door-main", "hold_open", "drill")],
        [("smoke-301", "hush", "drill"), ("door-main", "lock", "drill")],
    ]
    confirmed = next(e for e in rig.published if e.type == "gateway.fire_confirmed")
    assert (confirmed.data["by"], confirmed.data["user"], confirmed.data["drill"]) == (
        "fire_confirm", "li", True,
    )  # fmt: skip
    assert all(e.data["drill"] is True for e in rig.published)
    assert rig.book.alarms == {} and not rig.world.fire_mode  # the real book: untouched
    assert not fire.done and not fire.confirmed  # the running rule: none the wiser


def test_a_real_fire_mid_drill_stops_it_before_anything_is_hushed_or_relocked() -> None:
    rig = Rig()

    def fire_breaks_out() -> None:
        rig.real_fire = True

    rig.after_actions = fire_breaks_out
    summary = rig.run()
    assert (summary["phase"], summary["reason"]) == ("aborted", "a real fire began")
    assert [s["phase"] for s in summary["steps"]] == ["alarm"]
    assert [a.name for batch in rig.carried for a in batch] == ["all_off", "sound"]
    assert rig.published[-1].data["phase"] == "aborted"


def test_refused_in_fire_mode_while_another_runs_and_without_a_detector() -> None:
    rig = Rig()
    rig.real_fire = True
    with pytest.raises(Refusal) as refused:
        rig.run()
    assert refused.value.code == "forbidden" and rig.published == []
    rig.real_fire = False

    async def two_at_once() -> list[Any]:
        return await asyncio.gather(
            rig.drill.run(True, "li", "control"), rig.drill.run(True, "wang", "platform"),
            return_exceptions=True,
        )  # fmt: skip

    first, second = asyncio.run(two_at_once())
    assert first["phase"] == "finished"
    assert isinstance(second, Refusal) and second.detail == "a fire drill is already running"
    no_detector = Rig({"pile-1": DEVICES["pile-1"]})
    with pytest.raises(Refusal) as refused:
        no_detector.run()
    assert refused.value.code == "unsupported"


def test_without_actuate_nothing_is_carried_out() -> None:
    rig = Rig()
    summary = rig.run(actuate=False)
    assert rig.carried == [] and summary["moved"] == 0
    assert {a["outcome"] for s in summary["steps"] for a in s["actions"]} == {"would"}
