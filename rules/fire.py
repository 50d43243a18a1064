"""Fire mode: one alarm, every charger cut, escape doors released, everyone told.

Entered on a smoke or heat alarm from any configured detector, or on a charging pile's external
smoke input. It persists across restarts and across the detector clearing, until a person resets
it (the ``fire_reset`` command or ``gatewayd alarm reset``). While it is on, ``port_on`` and
``lock`` are refused. Installers may narrow which detectors cut the chargers or release the
doors (a bedroom vs. the charging area); the default, ``["*"]``, is that any alarm does both.

Pure like every rule: it decides actions; the runtime carries them out, all at once where the
hardware allows, and keeps retrying a door it could not release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.model import TICK, Action, Event
from gatewayd.schema import Schema, StrList
from rules.engine import Outcome, Rule, World

SMOKE_ALARMS = ("smoke.alarm", "smoke.heat_alarm")
REFUSED_IN_FIRE = {"port_on": "chargers stay off", "lock": "escape doors stay open"}


class FireRule(Rule):
    name: ClassVar[str] = "fire"
    schema: ClassVar[Schema] = {
        "cut_chargers_on": StrList(
            default=("*",), doc='detector (or pile) ids whose alarm cuts every charger; "*" = any'
        ),
        "release_doors_on": StrList(
            default=("*",),
            doc='detector (or pile) ids whose alarm releases the escape doors; "*" = any',
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.cut_on = set(settings.get("cut_chargers_on", ("*",)))
        self.release_on = set(settings.get("release_doors_on", ("*",)))
        self.cut = False  # this fire episode's linkage, as issued
        self.released = False
        self.asserted = False  # after a restart in fire mode, issue the linkage again

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == "gateway.fire_reset":
            return self._reset(world)
        trigger = self._trigger(event, world)
        if trigger is None:
            if event.type == TICK and world.fire_mode and not self.asserted:
                return self._linkage(world, event, cut=True, release=True, restart=True)
            return None
        return self._linkage(
            world,
            event,
            cut=_matches(self.cut_on, trigger),
            release=_matches(self.release_on, trigger),
        )

    def permit(self, action: Action, world: World) -> str | None:
        if world.fire_mode and action.name in REFUSED_IN_FIRE:
            return f"fire mode: {REFUSED_IN_FIRE[action.name]} until the fire is reset"
        return None

    def _trigger(self, event: Event, world: World) -> str | None:
        device = world.devices.get(event.device)
        if device is None:
            return None
        if event.type in SMOKE_ALARMS and device.kind == "smoke":
            return device.id
        if event.type == "charger.status" and "smoke_input" in event.data.get("set", ()):
            return device.id
        return None

    def _linkage(
        self, world: World, event: Event, *, cut: bool, release: bool, restart: bool = False
    ) -> Outcome:
        out = Outcome(fire_mode=True)
        self.asserted = True
        if not world.fire_mode:
            room = (
                world.devices[event.device].settings.get("room", "")
                if event.device in world.devices
                else ""
            )
            out.events.append(
                Event(
                    world.gateway_id,
                    "gateway.fire_mode",
                    "critical",
                    {"trigger": event.device, "type": event.type, "room": room},
                    ts=event.ts,
                )
            )
        reason = "fire (after restart)" if restart else f"fire: {event.type} at {event.device}"
        if cut and (restart or not self.cut):
            self.cut = True
            out.actions += [
                Action(d.id, "all_off", reason=reason, origin=self.name)
                for d in world.devices.values()
                if d.kind == "charger"
            ]
        if release and (restart or not self.released):
            self.released = True
            out.actions += [
                Action(d.id, "hold_open", reason=reason, origin=self.name)
                for d in world.devices.values()
                if d.kind == "door_lock" and d.settings.get("escape_route")
            ]
        return out

    def _reset(self, world: World) -> Outcome:
        """Doors back to normal, locked; chargers stay off until a person turns ports on."""
        self.cut = self.released = False
        self.asserted = True
        return Outcome(
            actions=[
                Action(d.id, "lock", reason="fire_reset", origin=self.name)
                for d in world.devices.values()
                if d.kind == "door_lock" and d.settings.get("escape_route")
            ]
        )


def _matches(ids: set[str], trigger: str) -> bool:
    return "*" in ids or trigger in ids
