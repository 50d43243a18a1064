"""The smoke rule: detector events become alarms, and a silent detector is itself an alarm.

Smoke and heat alarms are critical; low battery, tamper, faults and failed self-tests are
warnings; a configured detector that has sent nothing for ``missing_after_periods`` heartbeat
periods is reported missing (battery out, destroyed, out of range) and cleared when it is heard
again. Pure like every rule: no I/O, no clock of its own (time comes from events and ticks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gatewayd.model import TICK, Event
from gatewayd.schema import Float, Int, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World

MISSING, RETURNED = "smoke.missing", "smoke.returned"
RECEIVER_OFFLINE, RECEIVER_ONLINE = "gateway.receiver_offline", "gateway.receiver_online"
ALARMS = ("smoke.alarm", "smoke.heat_alarm")
#: event type -> the data key worth carrying into the alarm
WARNINGS = {"smoke.low_battery": "battery_mv", "smoke.fault": "fault"}


class SmokeRule(Rule):
    name: ClassVar[str] = "smoke"
    schema: ClassVar[Schema] = {
        "heartbeat_seconds": Float(
            0.1, 7 * 86400, 3600.0, doc="The detectors' heartbeat period (SRB-433: 60 minutes)."
        ),
        "missing_after_periods": Int(
            1, 100, 3, doc="Heartbeat periods of silence before a detector counts as missing."
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        # Unvalidated settings may lack keys; the defaults live in the schema only.
        get = {k: settings.get(k, f.default) for k, f in self.schema.items()}
        self.heartbeat: float = get["heartbeat_seconds"]
        self.limit: float = self.heartbeat * get["missing_after_periods"]
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
        return self._detector_event(event)

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
        elif self._last_tick is not None and now < self._last_tick:
            self.last_seen = {d: min(t, now) for d, t in self.last_seen.items()}
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
