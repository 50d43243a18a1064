"""The electrical rule, ``[rules.electrical]``: an EFM-4's alarms on the gateway's list, and
what the gateway does about them.

A leakage or over-temperature alarm is critical and latched (docs/alarms.md): raised when the
detector reports it (the detector itself held the threshold for its delay and latched it), its
channel's part over once the value is back below the threshold, and reset by a person, which
is refused while the value is at or above it (or unknown: a broken sensor). The person's reset
also resets the detector's own latch (its ``reset`` action). With ``trip_on_alarm`` the alarm
trips that detector's breaker. A broken sensor is a warning while it lasts; a silent detector
too. ``close`` is refused, always: nothing re-closes a breaker.

Pure like every rule: no I/O; the runtime carries out the actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.alarms.catalogue import AlarmSpec
from gatewayd.events import ALARM_RESET
from gatewayd.model import Action, Alarm, Event
from gatewayd.schema import Bool, Schema
from gatewayd_efm import events as ev
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World

_LOOK = ("Send an electrician: {what} on this circuit is a fire starting. Reset the alarm once "
         "the value is back below the threshold; a tripped breaker is switched on by hand.")  # fmt: skip
ALARM_TYPES = (
    AlarmSpec(ev.LEAKAGE_ALARM, "critical", True, "reset by a person once the leakage current "
              "is back below the detector's threshold", _LOOK.format(what="leakage current"),
              part="channel"),
    AlarmSpec(ev.OVERTEMP_ALARM, "critical", True, "reset by a person once the temperature is "
              "back below the detector's threshold", _LOOK.format(what="an overheating cable "
              "or terminal"), part="channel"),
    AlarmSpec(ev.FAULT, "warning", False, "when the channel's sensor reads again",
              "A sensor wire of the electrical fire detector is broken: that circuit is not "
              "watched. Have it repaired.", part="channel"),
    AlarmSpec(ev.OFFLINE, "warning", False, "when the detector answers again",
              "The electrical fire detector does not answer: check its RS-485 wiring and power."),
)  # fmt: skip


class ElectricalRule(Rule):
    name: ClassVar[str] = "electrical"
    schema: ClassVar[Schema] = {
        "trip_on_alarm": Bool(
            default=False, doc="a leakage or over-temperature alarm trips that detector's breaker"
        ),
    }
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = ALARM_TYPES

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.trip_on_alarm = bool(settings.get("trip_on_alarm", False))

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == ALARM_RESET:
            return self._reset(event, world)
        device = world.devices.get(event.device)
        if device is None or device.kind != ev.KIND:
            return None
        data, part = event.data, str(event.data.get("channel", ""))
        if event.type in ev.ALARMS:
            out = Outcome(alarms=[RaiseAlarm(device.id, event.type, dict(data), part=part)])
            if self.trip_on_alarm:
                reason = f"{event.type} on channel {part}"
                out.actions.append(Action(device.id, "trip", reason=reason, origin=self.name))
            return out
        if event.type == ev.ALARM_OVER:
            return Outcome(alarms=[ClearAlarm(device.id, str(data.get("alarm")), part=part)])
        if event.type == ev.FAULT:
            if data.get("fault") == "none":
                return Outcome(alarms=[ClearAlarm(device.id, ev.FAULT, part=part)])
            return Outcome(alarms=[RaiseAlarm(device.id, ev.FAULT, dict(data), part=part)])
        if event.type == ev.OFFLINE:
            return Outcome(alarms=[RaiseAlarm(device.id, ev.OFFLINE, dict(data))])
        if event.type == ev.ONLINE:
            return Outcome(alarms=[ClearAlarm(device.id, ev.OFFLINE)])
        return None

    def _reset(self, event: Event, world: World) -> Outcome | None:
        """A person reset one of our latched alarms: the detector's latch goes too."""
        if event.data.get("type") not in ev.ALARMS:
            return None
        device = str(event.data.get("alarm", "")).split("/", 1)[0]
        if device not in world.devices:
            return None
        why = f"{event.data.get('type')} reset by {event.data.get('user')}"
        return Outcome(actions=[Action(device, "reset", reason=why, origin=self.name)])

    def permit(self, action: Action, world: World) -> str | None:
        device = world.devices.get(action.device)
        if device is not None and device.kind == ev.KIND and action.name == "close":
            return ev.MANUAL_ONLY_WHY
        return None

    def permit_reset(self, alarm: Alarm, world: World) -> str | None:
        if alarm.type not in ev.ALARMS:
            return None
        from gatewayd_efm import codec  # its register map: a house with an EFM-4 has it loaded

        channels = {
            str(c.get("channel")): c for c in world.state(alarm.device).get("channels") or ()
        }
        for part in sorted(alarm.parts):
            channel = channels.get(part)
            if channel is None or channel.get("value") is None:
                return f"channel {part} has no reading: reset once it reads below its threshold"
            if not codec.below(channel):
                return (f"channel {part} still reads {channel['value']} {channel.get('unit', '')} "
                        f"(threshold {channel.get('threshold')}): reset once it is below")  # fmt: skip
        return None
