"""Fire mode: one alarm, every charger cut, escape doors released, everyone told.

Entered when a device family says one of its events reports a fire (a detector's smoke or
heat alarm, a charging pile's external smoke input: ``Family.fire_signal``). Fire mode is the
``gateway.fire_mode`` alarm (``gatewayd.alarms``): latched, its parts the devices that reported
the fire. It persists across restarts until a person resets it, and the reset is refused while
any device still reports the fire. What each device does in a fire is its family's
(``fire_actions``: chargers cut, escape doors released) and so is what it refuses meanwhile
(``refuse_in_fire``: ``port_on``, ``lock``, an ``unlock`` of a door held open already); after
the reset, ``after_fire`` (doors locked again, retried until each lock confirms). This rule
names no family.

Installers may narrow which triggers cut (``cut``) and which release (``release``): the
default, ``["*"]``, is that any fire does both.

Pure like every rule: it decides actions; the runtime carries them out, all at once where the
hardware allows, and keeps retrying what the actions' ``persist`` asks for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.alarms.catalogue import FIRE_MODE
from gatewayd.events import FIRE_RESET
from gatewayd.family import STAGES, FireSignal
from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from gatewayd.schema import DeviceIds, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World


class FireRule(Rule):
    name: ClassVar[str] = "fire"
    schema: ClassVar[Schema] = {
        "cut_chargers_on": DeviceIds(
            default=("*",), doc='detector (or pile) ids whose alarm cuts every charger; "*" = any'
        ),
        "release_doors_on": DeviceIds(
            default=("*",),
            doc='detector (or pile) ids whose alarm releases the escape doors; "*" = any',
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.triggers = {
            "cut": set(settings.get("cut_chargers_on", ("*",))),
            "release": set(settings.get("release_doors_on", ("*",))),
        }
        self.done: set[str] = set()  # the roles this fire episode's linkage issued
        self.asserted = False  # after a restart in fire mode, issue the linkage again

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == FIRE_RESET:
            return self._reset(world)
        if event.type == TICK:
            if world.fire_mode and not self.asserted:
                return self._linkage(world, event, None)
            return self._reconcile(world)
        device = world.devices.get(event.device)
        if device is None:
            return None
        family = world.family(device)
        fire = world.alarms.get(alarm_id(world.gateway_id, FIRE_MODE))
        if fire is not None and fire.parts.get(device.id) and family.fire_over(event, device):
            return Outcome(alarms=[ClearAlarm(world.gateway_id, FIRE_MODE, device.id)])
        signal = family.fire_signal(event, device)
        return None if signal is None else self._linkage(world, event, signal)

    def permit(self, action: Action, world: World) -> str | None:
        device = world.devices.get(action.device)
        if not world.fire_mode or device is None:
            return None
        why = world.family(device).refuse_in_fire(action, world.state(action.device))
        return f"fire mode: {why}" if why else None

    def permit_reset(self, alarm: Alarm, world: World) -> str | None:
        if alarm.type != FIRE_MODE:
            return None
        still = [d for d in sorted(world.devices) if self._reports_fire(d, world)]
        if still:
            return f"fire still reported by {', '.join(still)}: reset once every one is clear"
        return None

    def _reports_fire(self, device_id: str, world: World) -> bool:
        device = world.devices[device_id]
        return world.family(device).reports_fire(device, world.alarms, world.state(device_id))

    def _reconcile(self, world: World) -> Outcome | None:
        """A part whose device no longer reports (its alarm ended while we were down, or
        timed out) is over: a reset need not wait for a report that will never come."""
        fire = world.alarms.get(alarm_id(world.gateway_id, FIRE_MODE))
        if fire is None or not fire.active:
            return None
        over = [
            p
            for p in fire.active_parts
            if p not in world.devices or not self._reports_fire(p, world)
        ]
        if not over:
            return None
        return Outcome(alarms=[ClearAlarm(world.gateway_id, FIRE_MODE, p) for p in over])

    def _linkage(self, world: World, event: Event, signal: FireSignal | None) -> Outcome:
        """``signal`` None: the restart of a fire mode that was on (everything again)."""
        out = Outcome()
        self.asserted = True
        if signal is not None:
            trigger = world.devices[signal.device]
            room = world.family(trigger).room(trigger)
            data = {"trigger": signal.device, "type": event.type, "room": room,
                    "what": signal.what}  # fmt: skip
            out.alarms.append(RaiseAlarm(world.gateway_id, FIRE_MODE, data, part=signal.device))
            if not world.fire_mode:
                out.events.append(Event(world.gateway_id, FIRE_MODE, "critical", data, ts=event.ts))
            reason = f"fire: {event.type} at {event.device}"
        else:
            reason = "fire (after restart)"
        wanted = {
            role
            for role, ids in self.triggers.items()
            if signal is None or "*" in ids or signal.device in ids
        }
        if signal is not None:
            wanted -= self.done  # this episode's linkage was issued already
        self.done |= wanted
        for device in world.devices.values():
            family = world.family(device)
            # One alarm confirms the fire for now: every stage's actions at once.
            for stage in STAGES:
                for role, action in family.fire_actions(device, stage):
                    if role in wanted:
                        out.actions.append(
                            dataclasses.replace(action, reason=reason, origin=self.name)
                        )
        return out

    def _reset(self, world: World) -> Outcome:
        """What each device does once a person reset fire mode (doors locked again until each
        lock confirms); chargers stay off until a person turns ports on."""
        self.done = set()
        self.asserted = True
        actions = [
            dataclasses.replace(action, origin=self.name)
            for device in world.devices.values()
            for action in world.family(device).after_fire(device)
        ]
        return Outcome(actions=actions)
