"""Fire mode: one alarm, every charger cut, escape doors released, everyone told.

Entered on a smoke or heat alarm from any configured detector, or on a charging pile's external
smoke input. Fire mode is the ``gateway.fire_mode`` alarm (``gatewayd.alarms``): latched, its
parts the detectors and piles that reported the fire. It persists across restarts until a
person resets it, and the reset is refused while any detector or pile still reports smoke or
heat. While it is on, ``port_on`` and ``lock`` are refused, and so is ``unlock`` of a door the
lock reports held open (it is open already). After the reset the escape doors
are locked again, retried until each lock confirms; chargers stay off.

Installers may narrow which detectors cut the chargers or release the doors (a bedroom vs. the
charging area); the default, ``["*"]``, is that any alarm does both.

Pure like every rule: it decides actions; the runtime carries them out, all at once where the
hardware allows, and keeps retrying what the actions' ``persist`` asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.alarms.catalogue import FIRE_MODE, AlarmSpec
from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from gatewayd.schema import DeviceIds, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World
from rules.smoke import ALARMS as SMOKE_ALARMS

REFUSED_IN_FIRE = {"port_on": "chargers stay off", "lock": "escape doors stay open"}
#: An unlock of a door the fire holds open would be answered "ok" with nothing changed (a held
#: open lock stays held open): say what is true instead. A door that did not release (its lock
#: says so) may still be unlocked: that helps people out.
HELD_OPEN_IN_FIRE = "the door is held open already and stays open until the fire is reset"
FIRE_RESET = "gateway.fire_reset"
SMOKE_INPUT = "smoke_input"
RELEASE_FAILED, RELOCK_FAILED = "door.release_failed", "door.relock_failed"


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
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = (
        AlarmSpec(
            RELEASE_FAILED,
            "critical",
            latched=False,
            clears="by itself, once the lock reports itself held open (tried every few seconds "
            "while fire mode lasts), or when fire mode ends",
            action="An escape door did not release in a fire: send someone to open it by hand "
            "and check the lock's power and radio.",
        ),
        AlarmSpec(
            RELOCK_FAILED,
            "warning",
            latched=False,
            clears="by itself, once the lock confirms it is locked (tried until it does)",
            action="After a fire reset the entrance did not lock again: the building is open. "
            "Check the lock.",
        ),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.cut_on = set(settings.get("cut_chargers_on", ("*",)))
        self.release_on = set(settings.get("release_doors_on", ("*",)))
        self.cut = False  # this fire episode's linkage, as issued
        self.released = False
        self.asserted = False  # after a restart in fire mode, issue the linkage again

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == FIRE_RESET:
            return self._reset(world)
        if event.type == TICK:
            if world.fire_mode and not self.asserted:
                return self._linkage(world, event, None, cut=True, release=True)
            return self._reconcile(world)
        ended = self._ended(event, world)
        if ended is not None:
            return Outcome(alarms=[ClearAlarm(world.gateway_id, FIRE_MODE, ended)])
        trigger = self._trigger(event, world)
        if trigger is None:
            return None
        return self._linkage(
            world,
            event,
            trigger,
            cut=_matches(self.cut_on, trigger),
            release=_matches(self.release_on, trigger),
        )

    def permit(self, action: Action, world: World) -> str | None:
        if not world.fire_mode:
            return None
        if action.name in REFUSED_IN_FIRE:
            return f"fire mode: {REFUSED_IN_FIRE[action.name]} until the fire is reset"
        if action.name == "unlock" and world.state(action.device).get("lock") == "held_open":
            return f"fire mode: {HELD_OPEN_IN_FIRE}"
        return None

    def permit_reset(self, alarm: Alarm, world: World) -> str | None:
        if alarm.type != FIRE_MODE:
            return None
        still = [d for d in sorted(world.devices) if self._reports_fire(d, world)]
        if still:
            return f"fire still reported by {', '.join(still)}: reset once every one is clear"
        return None

    # -- what starts and ends a fire -------------------------------------------------------

    def _trigger(self, event: Event, world: World) -> str | None:
        device = world.devices.get(event.device)
        if device is None:
            return None
        if event.type in SMOKE_ALARMS and device.kind == "smoke":
            return device.id
        if event.type == "charger.status" and SMOKE_INPUT in event.data.get("set", ()):
            return device.id
        return None

    def _ended(self, event: Event, world: World) -> str | None:
        """The device whose report of the fire this event ends, if it was one of its parts."""
        fire = world.alarms.get(alarm_id(world.gateway_id, FIRE_MODE))
        if fire is None or not fire.parts.get(event.device):
            return None
        if event.type == "smoke.cleared":
            return event.device
        if event.type == "charger.status" and SMOKE_INPUT in event.data.get("cleared", ()):
            return event.device
        return None

    def _reports_fire(self, device: str, world: World) -> bool:
        config = world.devices.get(device)
        if config is None:
            return False
        if config.kind == "smoke":
            return any(
                (a := world.alarms.get(alarm_id(device, t))) is not None and a.active
                for t in SMOKE_ALARMS
            )
        return SMOKE_INPUT in world.state(device).get("status", ())

    def _reconcile(self, world: World) -> Outcome | None:
        """A part whose detector no longer reports (its alarm ended while we were down, or
        timed out) is over: a reset need not wait for a frame that will never come."""
        fire = world.alarms.get(alarm_id(world.gateway_id, FIRE_MODE))
        if fire is None or not fire.active:
            return None
        over = [p for p in fire.active_parts if not self._reports_fire(p, world)]
        if not over:
            return None
        return Outcome(alarms=[ClearAlarm(world.gateway_id, FIRE_MODE, p) for p in over])

    # -- what a fire does ------------------------------------------------------------------

    def _linkage(
        self, world: World, event: Event, trigger: str | None, *, cut: bool, release: bool
    ) -> Outcome:
        out = Outcome()
        self.asserted = True
        restart = trigger is None
        if trigger is not None:
            room = world.devices[trigger].settings.get("room", "")
            data = {"trigger": trigger, "type": event.type, "room": room}
            out.alarms.append(RaiseAlarm(world.gateway_id, FIRE_MODE, data, part=trigger))
            if not world.fire_mode:
                out.events.append(Event(world.gateway_id, FIRE_MODE, "critical", data, ts=event.ts))
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
                Action(
                    d.id,
                    "hold_open",
                    reason=reason,
                    origin=self.name,
                    persist="while_fire",
                    alarm=RELEASE_FAILED,
                    expect={"lock": "held_open"},
                    done_event=("door.released", "warning"),
                )
                for d in _escape_doors(world)
            ]
        return out

    def _reset(self, world: World) -> Outcome:
        """Doors back to normal, locked (until each lock confirms); chargers stay off until a
        person turns ports on."""
        self.cut = self.released = False
        self.asserted = True
        return Outcome(
            actions=[
                Action(
                    d.id,
                    "lock",
                    reason="fire reset",
                    origin=self.name,
                    persist="until_done",
                    alarm=RELOCK_FAILED,
                    expect={"lock": "locked"},
                    done_event=("door.restored", "info"),
                )
                for d in _escape_doors(world)
            ]
        )


def _escape_doors(world: World) -> list[Any]:
    return [
        d
        for d in world.devices.values()
        if d.kind == "door_lock" and d.settings.get("escape_route")
    ]


def _matches(ids: set[str], trigger: str) -> bool:
    return "*" in ids or trigger in ids
