"""The smoke rule: detector events become alarms, and a silent detector is itself an alarm.

Smoke and heat alarms are critical; low battery, tamper, faults and failed self-tests are
warnings; a configured detector that has sent nothing for ``missing_after_periods`` heartbeat
periods is reported missing (battery out, destroyed, out of range) and cleared when it is heard
again. Pure like every rule: no I/O, no clock of its own (time comes from events and ticks).

A detector never says its battery is fine again: it checks at power-up and every 24 h and
speaks only when the battery is low. So a low-battery alarm clears itself when a heartbeat
shows a fresh battery (``battery_replaced_mv`` above the reported level), or when the detector
has kept talking through two daily checks without reporting low again
(``low_battery_recheck_hours``: one lost radio frame must not make the warning flap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.model import TICK, Event, alarm_id
from gatewayd.schema import Float, Int, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World

MISSING, RETURNED = "smoke.missing", "smoke.returned"
RECEIVER_OFFLINE, RECEIVER_ONLINE = "gateway.receiver_offline", "gateway.receiver_online"
ALARMS = ("smoke.alarm", "smoke.heat_alarm")
#: event type -> the data key worth carrying into the alarm
WARNINGS = {"smoke.low_battery": "battery_mv", "smoke.fault": "fault"}
LOW_BATTERY = "smoke.low_battery"


class SmokeRule(Rule):
    name: ClassVar[str] = "smoke"
    schema: ClassVar[Schema] = {
        "heartbeat_seconds": Float(
            0.1, 7 * 86400, 3600.0, doc="The detectors' heartbeat period (SRB-433: 60 minutes)."
        ),
        "missing_after_periods": Int(
            1, 100, 3, doc="Heartbeat periods of silence before a detector counts as missing."
        ),
        "battery_replaced_mv": Int(
            50, 2000, 200, doc="A heartbeat this far above the low report means a new battery."
        ),
        "low_battery_recheck_hours": Float(
            1, 24 * 30, 49, doc="Heard this long with no new low report: the battery is fine."
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        # Unvalidated settings may lack keys; the defaults live in the schema only.
        get = {k: settings.get(k, f.default) for k, f in self.schema.items()}
        self.heartbeat: float = get["heartbeat_seconds"]
        self.limit: float = self.heartbeat * get["missing_after_periods"]
        self.replaced_mv: int = get["battery_replaced_mv"]
        self.recheck: float = get["low_battery_recheck_hours"] * 3600
        self.low_at: dict[str, float] = {}  # device -> when it last reported low battery
        self.last_seen: dict[str, float] = {}
        self.missing: set[str] = set()
        self._last_tick: float | None = None

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == TICK:
            return self._tick(world)
        if event.type in (RECEIVER_OFFLINE, RECEIVER_ONLINE):
            return self._receiver(event)
        if event.kind != "smoke" or event.type in (MISSING, RETURNED):
            return None  # our own derived events say nothing about the radio
        out = self._detector_event(event)
        if event.type == "smoke.heartbeat":
            out.alarms.extend(self._battery_fine(event, world))
        return out

    def _battery_fine(self, beat: Event, world: World) -> list[ClearAlarm]:
        """Clear an active low-battery alarm that a heartbeat shows is over (see above)."""
        alarm = world.alarms.get(alarm_id(beat.device, LOW_BATTERY))
        if alarm is None:
            return []
        low_mv, mv = alarm.data.get("battery_mv"), beat.data.get("battery_mv")
        replaced = (
            isinstance(mv, int) and isinstance(low_mv, int) and mv >= low_mv + self.replaced_mv
        )
        # After a restart the rule has no memory of the last report: count from now.
        quiet = beat.ts - self.low_at.setdefault(beat.device, beat.ts) >= self.recheck
        return [ClearAlarm(beat.device, LOW_BATTERY)] if replaced or quiet else []

    @staticmethod
    def _receiver(event: Event) -> Outcome:
        """With the receiver gone no detector can be heard: as serious as a missing detector
        in every room, so a critical alarm until it answers again."""
        if event.type == RECEIVER_OFFLINE:
            return Outcome(
                alarms=[RaiseAlarm(event.device, RECEIVER_OFFLINE, "critical", dict(event.data))]
            )
        return Outcome(alarms=[ClearAlarm(event.device, RECEIVER_OFFLINE)])

    def _detector_event(self, event: Event) -> Outcome:
        out = Outcome()
        device, data = event.device, event.data
        self.last_seen[device] = max(event.ts, self.last_seen.get(device, event.ts))
        if device in self.missing:
            self.missing.discard(device)
            out.events.append(Event(device, RETURNED, "info", {"after": event.type}, ts=event.ts))
            out.alarms.append(ClearAlarm(device, MISSING))
        type_ = event.type
        if type_ in ALARMS:
            out.alarms.append(RaiseAlarm(device, type_, "critical", dict(data)))
        elif type_ == "smoke.cleared":
            out.alarms.extend(ClearAlarm(device, t) for t in ALARMS)
        elif type_ in WARNINGS:
            if type_ == LOW_BATTERY:
                self.low_at[device] = event.ts
            key = WARNINGS[type_]
            out.alarms.append(RaiseAlarm(device, type_, "warning", {key: data.get(key)}))
        elif type_ == "smoke.tamper":
            if data.get("removed"):
                out.alarms.append(RaiseAlarm(device, type_, "warning", {"removed": True}))
            else:
                out.alarms.append(ClearAlarm(device, type_))
        elif type_ == "smoke.test":
            # A detector that fails its own test will not sound in a fire: worth a warning.
            if data.get("result") == "fail":
                out.alarms.append(RaiseAlarm(device, "smoke.test_failed", "warning"))
            else:
                out.alarms.append(ClearAlarm(device, "smoke.test_failed"))
        return out

    def _tick(self, world: World) -> Outcome | None:
        now = world.now
        # Ticks come every second or so. A gap longer than a heartbeat period means the clock
        # stepped (a Pi without RTC syncing NTP) or the process stood still: nobody could have
        # been heard meanwhile, so start counting again instead of flagging every detector.
        if self._last_tick is not None and now - self._last_tick > self.heartbeat:
            self.last_seen = dict.fromkeys(self.last_seen, now)
            self.low_at = dict.fromkeys(self.low_at, now)  # nor can a day have gone by
        elif self._last_tick is not None and now < self._last_tick:
            self.last_seen = {d: min(t, now) for d, t in self.last_seen.items()}
            self.low_at = {d: min(t, now) for d, t in self.low_at.items()}
        self._last_tick = now
        out: Outcome | None = None
        for device, config in world.devices.items():
            if config.kind != "smoke":
                continue
            # Lazily at first sight, so a restart does not instantly flag every detector.
            seen = self.last_seen.setdefault(device, now)
            if device in self.missing or now - seen <= self.limit:
                continue
            self.missing.add(device)
            out = out or Outcome()
            data = {"last_seen": seen, "silent_seconds": round(now - seen)}
            out.events.append(Event(device, MISSING, "warning", data, ts=now))
            out.alarms.append(RaiseAlarm(device, MISSING, "warning", data))
        return out
