"""Fire mode in two stages: an alarm cuts and sounds, a confirmed fire opens the escape doors.

*Alarm*: a device family says one of its events reports a fire (a detector's smoke or heat
alarm, a charging pile's smoke input: ``Family.fire_signal``). The house enters fire mode, the
``gateway.fire_mode`` alarm (``gatewayd.alarms``): latched, its parts the devices that reported
the fire, its ``data.stage`` "alarm". Every family's ``fire_actions(device, "alarm")`` run:
every charger cut, every detector sounding (interconnection).

*Confirmed* (GB 50116-2013 §4.1.6): a second, independent signal within
``confirm_window_seconds`` (rules/fire_signals.py: another detector, a heat alarm, a pile's
smoke input, a charger's overheat cut; never a repeat or a replay of the same detector's
alarm), or a person's word (the platform's signed ``fire_confirm``: ``gateway.fire_confirm``).
Then ``data.stage`` becomes "confirmed", ``gateway.fire_confirmed`` says by what, and the
families' ``fire_actions(device, "confirmed")`` run: the escape doors held open. Why wait: a
single detector is the easiest thing in the house to fool (cooking steam, a recorded and
replayed legacy radio code), and an entrance door held open is a burglar's invitation;
``door_release = "any_alarm"`` releases at the first alarm where the fire brigade asks for it.

Fire mode persists across restarts until a person resets it; the reset is refused while any
device still reports the fire. After a restart the alarm stage's actions run again, and the
confirmed stage's only if the fire was confirmed (the stage is in the alarm's data, on disk).
What each device refuses meanwhile is its family's (``refuse_in_fire``), and what it does after
the reset too (``after_fire``: doors locked again, sounders hushed). This rule names no family.

Installers may narrow which triggers cut (``cut_chargers_on``) and which release
(``release_doors_on``): the default, ``["*"]``, is any. Pure like every rule: it decides
actions; the runtime carries them out, all at once where the hardware allows, and keeps
retrying what the actions' ``persist`` asks for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from gatewayd.alarms.catalogue import FIRE_MODE
from gatewayd.events import FIRE_CONFIRM, FIRE_CONFIRMED, FIRE_RESET
from gatewayd.family import REASSERT_SECONDS, REASSERTED, STAGES, FireSignal, Role, Stage
from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from gatewayd.schema import DeviceIds, Float, OneOf, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World
from rules.fire_signals import Signals

CONFIRMED: Stage = "confirmed"


class FireRule(Rule):
    name: ClassVar[str] = "fire"
    schema: ClassVar[Schema] = {
        "cut_chargers_on": DeviceIds(
            default=("*",), doc='detector (or pile) ids whose alarm cuts every charger; "*" = any'
        ),
        "release_doors_on": DeviceIds(
            default=("*",),
            doc='detector (or pile) ids whose signal may release the escape doors; "*" = any',
        ),
        "confirm_window_seconds": Float(
            1, 3600, 120.0, doc="A second, independent fire signal this soon confirms the fire."
        ),
        "door_release": OneOf(
            "confirmed", "any_alarm", default="confirmed",
            doc='When the escape doors are released: "confirmed" (a second signal, or a '
            'person) or "any_alarm" (the first alarm; a replayed legacy detector opens them).',
        ),
    }  # fmt: skip

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        get = {k: settings.get(k, f.default) for k, f in self.schema.items()}
        self.triggers: dict[Role, set[str]] = {
            "cut": set(get["cut_chargers_on"]),
            "release": set(get["release_doors_on"]),
        }
        #: The stages whose actions run at the first alarm.
        self.at_alarm: tuple[Stage, ...] = (
            STAGES if get["door_release"] == "any_alarm" else ("alarm",)
        )
        self.signals = Signals(get["confirm_window_seconds"])
        # The (stage, role)s this fire episode's linkage issued: a role of the confirmed stage
        # (an EFM-4's trip is a "cut") is not done because the alarm stage cut the chargers.
        self.done: set[tuple[Stage, Role]] = set()
        self.confirmed = False
        self.asserted = False  # after a restart in fire mode, issue the linkage again
        self.reasserted_at: float | None = None

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == FIRE_RESET:
            return self._reset(world)
        if event.type == FIRE_CONFIRM:
            return self._by_person(event, world)
        if event.type == TICK:
            if world.fire_mode and not self.asserted:
                return self._restart(world)
            return self._reassert(world, event.ts) or self._reconcile(world)
        device = world.devices.get(event.device)
        if device is None:
            return None
        family = world.family(device)
        fire = self._fire(world)
        if fire is not None and fire.parts.get(device.id) and family.fire_over(event, device):
            return Outcome(alarms=[ClearAlarm(world.gateway_id, FIRE_MODE, device.id)])
        signal = family.fire_signal(event, device)
        return None if signal is None else self._signal(world, event, signal)

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

    # -- the stages ------------------------------------------------------------------------------

    def _signal(self, world: World, event: Event, signal: FireSignal) -> Outcome | None:
        fire = self._fire(world)
        reporting = fire.active_parts if fire is not None and fire.active else ()
        other = self.signals.note(signal, event.ts, reporting)
        if signal.confirms_only and not world.fire_mode:
            return None  # remembered: it confirms an alarm that follows within the window
        # A restart in fire mode whose first news is a signal: the stage reached first.
        out = self._restart(world) if world.fire_mode and not self.asserted else Outcome()
        self.asserted = True
        reason = f"fire: {event.type} at {event.device}"
        confirm = other is not None and not self._is_confirmed(world)
        if not signal.confirms_only:
            trigger = world.devices[signal.device]
            data = {"trigger": signal.device, "type": event.type,
                    "room": world.family(trigger).room(trigger), "what": signal.what,
                    **self._stage_data(world, event.type if confirm else None)}  # fmt: skip
            out.alarms.append(RaiseAlarm(world.gateway_id, FIRE_MODE, data, part=signal.device))
            if not world.fire_mode:
                out.events.append(Event(world.gateway_id, FIRE_MODE, "critical", data, ts=event.ts))
            for stage in self.at_alarm:
                self._issue(world, out, stage, reason, {signal.device})
        elif confirm:
            self._restage(world, out, event.type)
        if other is not None and confirm:
            first = other.device if other.device != signal.device else None
            self._confirmed(world, out, event, event.type, signal.device, signal.what, first)
            self._issue(world, out, CONFIRMED, reason, {signal.device, other.device})
        return out

    def _by_person(self, event: Event, world: World) -> Outcome | None:
        """The platform's signed ``fire_confirm`` (the command gate checked the signature, the
        freshness and that the id was never used; ``Responses`` that the alarm is this fire)."""
        if not world.fire_mode or self._is_confirmed(world):
            return None
        out = Outcome()
        user = event.data.get("user")
        self._restage(world, out, "fire_confirm")
        self._confirmed(world, out, event, "fire_confirm", None, "a person", None, user)
        self._issue(world, out, CONFIRMED, f"fire confirmed by {user}", None)
        return out

    def _stage_data(self, world: World, confirming: str | None) -> dict[str, Any]:
        """What the fire alarm's data says of its stage (kept on disk: a restart in a
        confirmed fire releases the doors again)."""
        fire = self._fire(world)
        if confirming is not None:
            return {"stage": CONFIRMED, "confirmed_by": confirming}
        if self._is_confirmed(world) and fire is not None:
            return {"stage": CONFIRMED, "confirmed_by": fire.data.get("confirmed_by")}
        return {"stage": "alarm"}

    def _restage(self, world: World, out: Outcome, by: str) -> None:
        """The fire alarm's data, now confirmed (no new part: nothing new reports the fire)."""
        fire = self._fire(world)
        data = {**(fire.data if fire is not None else {}), **self._stage_data(world, by)}
        out.alarms.append(RaiseAlarm(world.gateway_id, FIRE_MODE, data))

    def _confirmed(self, world: World, out: Outcome, event: Event, by: str,
                   device: str | None, what: str, first: str | None,
                   user: str | None = None) -> None:  # fmt: skip
        """Stage two reached: say so, and by what."""
        self.confirmed = True
        fire = self._fire(world)
        since = fire.since if fire is not None else event.ts
        room = ""
        if device is not None and device in world.devices:
            cfg = world.devices[device]
            room = world.family(cfg).room(cfg)
        data = {"alarm": alarm_id(world.gateway_id, FIRE_MODE), "by": by, "device": device,
                "what": what, "room": room, "user": user, "first": first,
                "after_seconds": round(max(0.0, event.ts - since), 3)}  # fmt: skip
        out.events.append(Event(world.gateway_id, FIRE_CONFIRMED, "critical", data, ts=event.ts))

    def _issue(self, world: World, out: Outcome, stage: Stage, reason: str,
               sources: Collection[str] | None) -> None:  # fmt: skip
        """Every device's actions at ``stage`` whose role this episode has not issued yet and
        that ``sources`` may start (None: a person, or a restart: any)."""
        wanted: set[Role] = set()
        for device in world.devices.values():
            for role, _action in world.family(device).fire_actions(device, stage):
                ids = self.triggers.get(role)
                if sources is None or ids is None or "*" in ids or ids & set(sources):
                    wanted.add(role)
        wanted -= {role for done_stage, role in self.done if done_stage == stage}
        self.done |= {(stage, role) for role in wanted}
        for device in world.devices.values():
            for role, action in world.family(device).fire_actions(device, stage):
                if role in wanted:
                    out.actions.append(dataclasses.replace(action, reason=reason, origin=self.name))

    def _reassert(self, world: World, now: float) -> Outcome | None:
        """What wears off is asked for again while the fire lasts (``REASSERTED``): once each
        time, so a failure is told, not retried on top of the last one's retries."""
        if not world.fire_mode:
            self.reasserted_at = None
            return None
        if self.reasserted_at is None:
            self.reasserted_at = now
        if now - self.reasserted_at < REASSERT_SECONDS:
            return None
        self.reasserted_at = now
        actions = [
            dataclasses.replace(action, reason="fire (again)", origin=self.name, persist="once")
            for device in world.devices.values()
            for role, action in world.family(device).fire_actions(device, "alarm")
            if role in REASSERTED and ("alarm", role) in self.done
        ]
        return Outcome(actions=actions) if actions else None

    def _restart(self, world: World) -> Outcome:
        """Fire mode was on when the gateway started: every action of the stage it had
        reached, again (a door released before the restart is released again; one of a fire
        only at its alarm stage is not)."""
        self.asserted = True
        self.confirmed = self._is_confirmed(world)
        out = Outcome()
        stages = STAGES if self.confirmed else self.at_alarm
        for stage in dict.fromkeys(stages):
            self._issue(world, out, stage, "fire (after restart)", None)
        return out

    def _reset(self, world: World) -> Outcome:
        """What each device does once a person reset fire mode (doors locked again until each
        lock confirms, sounders hushed); chargers stay off until a person turns ports on."""
        self.done = set()
        self.confirmed = False
        self.signals.clear()
        self.asserted = True
        actions = [
            dataclasses.replace(action, origin=self.name)
            for device in world.devices.values()
            for action in world.family(device).after_fire(device)
        ]
        return Outcome(actions=actions)

    # -- what the world says ----------------------------------------------------------------------

    def _fire(self, world: World) -> Alarm | None:
        return world.alarms.get(alarm_id(world.gateway_id, FIRE_MODE))

    def _is_confirmed(self, world: World) -> bool:
        fire = self._fire(world)
        on_disk = fire is not None and fire.data.get("stage") == CONFIRMED
        return world.fire_mode and (self.confirmed or on_disk)

    def _reports_fire(self, device_id: str, world: World) -> bool:
        device = world.devices[device_id]
        return world.family(device).reports_fire(device, world.alarms, world.state(device_id))

    def _reconcile(self, world: World) -> Outcome | None:
        """A part whose device no longer reports (its alarm ended while we were down, or
        timed out) is over: a reset need not wait for a report that will never come."""
        fire = self._fire(world)
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
