"""The smoke rule: detector events become alarms, and a silent detector is itself an alarm.

Smoke and heat alarms are critical; low battery, tamper, faults and failed self-tests are
warnings; a configured detector that has sent nothing for ``missing_after_periods`` heartbeat
periods is reported missing (battery out, destroyed, out of range) and cleared when it is heard
again. The heartbeat period is the detector's model's (``SmokeFamily.heartbeat_seconds``); a
legacy detector (SD-1L) sends none, so it is never "missing": it is a standing warning,
``smoke.unsupervised``, for as long as it is configured. Pure like every rule: no I/O, no clock
of its own (time comes from events and ticks).

A detector never says its battery is fine again: it checks at power-up and every 24 h and
speaks only when the battery is low. So a low-battery alarm clears itself when a heartbeat
shows a fresh battery (``battery_replaced_mv`` above the reported level), or when the detector
has kept talking through two daily checks without reporting low again
(``low_battery_recheck_hours``: one lost radio frame must not make the warning flap).

While smoke persists a detector repeats its alarm every 30 s; an alarm not repeated for
``alarm_silence_seconds`` is over even if its "cleared" frame was lost or arrived while the
gateway was down (otherwise a fire mode could never be reset). A fault (dirty chamber, sensor
failure) is latched: nothing on the wire says a chamber was cleaned, so it is over once the
detector passes a self-test, and a person resets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.srb433.events import (
    ALARM_ENDED,
    CLEARED,
    DEFAULT_HEARTBEAT_SECONDS,
    FAULT,
    FROM_DETECTORS,
    HEARTBEAT,
    KIND,
    LOW_BATTERY,
    MISSING,
    RECEIVER_OFFLINE,
    RECEIVER_ONLINE,
    RETURNED,
    TAMPER,
    TEST,
    TEST_FAILED,
    UNSUPERVISED,
)
from drivers.srb433.events import FIRE as ALARMS
from gatewayd.alarms.catalogue import AlarmSpec
from gatewayd.driver import DeviceConfig
from gatewayd.model import TICK, Event, alarm_id
from gatewayd.schema import Float, Int, Schema
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, Rule, World

if TYPE_CHECKING:
    from drivers.srb433.family import SmokeFamily


@cache
def _family() -> SmokeFamily:
    """What a detector's model means (its heartbeat): imported once a house has detectors."""
    from drivers.srb433.family import SmokeFamily

    return SmokeFamily()


#: event type -> the data key worth carrying into the alarm
WARNINGS = {LOW_BATTERY: "battery_mv", FAULT: "fault"}

_FIRE_ACTION = "Call the house and dispatch; the chargers are already cut (fire mode)."
ALARM_TYPES = (
    AlarmSpec(ALARMS[0], "critical", False, "when the detector reports clear air, or stops "
              "repeating its alarm (alarm_silence_seconds)", _FIRE_ACTION),
    AlarmSpec(ALARMS[1], "critical", False, "when the detector reports clear, or stops "
              "repeating its alarm (alarm_silence_seconds)", _FIRE_ACTION),
    AlarmSpec(MISSING, "warning", False, "when the detector is heard again",
              "No heartbeat for three periods: battery out, removed, destroyed or out of range. "
              "That room has no remote fire alarm until someone checks the detector."),
    AlarmSpec(LOW_BATTERY, "warning", False, "when a heartbeat shows a new battery, or after two "
              "daily checks without a new low report", "Replace the detector's battery soon."),
    AlarmSpec(FAULT, "warning", True, "reset by a person after the detector passes a self-test",
              "Clean or replace the detector (dirty chamber, sensor failure, end of life), press "
              "its test button, then reset the alarm."),
    AlarmSpec(TAMPER, "warning", False, "when the detector is put back on its base",
              "The detector was taken off its base: put it back."),
    AlarmSpec(TEST_FAILED, "warning", False, "when a later self-test passes",
              "The detector failed its own test and will not sound in a fire: replace it."),
    AlarmSpec(UNSUPERVISED, "warning", False, "when the detector is configured as a supervised "
              "model, or removed",
              "A legacy detector (SD-1L) sends no heartbeat: nobody can tell a dead one from a "
              "quiet one, and its fixed radio code can be recorded and replayed. Replace it with "
              "a supervised model (SD-10, SHD-20)."),
    AlarmSpec(RECEIVER_OFFLINE, "critical", False, "when the receiver answers again",
              "The gateway cannot hear any detector of this house (receiver unplugged or dead). "
              "Detectors still sound locally; nobody is told remotely.", part="bus"),
)  # fmt: skip


class SmokeRule(Rule):
    name: ClassVar[str] = "smoke"
    schema: ClassVar[Schema] = {
        "heartbeat_seconds": Float(
            0.1,
            7 * 86400,
            None,
            doc="Overrides every supervised detector's heartbeat period (by default its "
            "model's: 60 minutes for the SD-10 and SHD-20; an SD-1L has none).",
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
        "alarm_silence_seconds": Float(
            35, 3600, 150, doc="An alarm not repeated this long is over (repeats come every 30 s)."
        ),
    }
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = ALARM_TYPES

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        # Unvalidated settings may lack keys; the defaults live in the schema only.
        get = {k: settings.get(k, f.default) for k, f in self.schema.items()}
        self.override: float | None = get["heartbeat_seconds"]
        # The shortest period a tick gap is measured against (a clock step, see _tick).
        self.heartbeat: float = self.override or DEFAULT_HEARTBEAT_SECONDS
        self.periods: int = get["missing_after_periods"]
        self.replaced_mv: int = get["battery_replaced_mv"]
        self.recheck: float = get["low_battery_recheck_hours"] * 3600
        self.silence: float = get["alarm_silence_seconds"]
        self.alarm_at: dict[tuple[str, str], float] = {}  # (device, type) -> last alarm frame
        self.low_at: dict[str, float] = {}  # device -> when it last reported low battery
        self.last_seen: dict[str, float] = {}
        self.missing: set[str] = set()
        self.unsupervised: set[str] = set()  # the legacy detectors this rule has raised
        self._last_tick: float | None = None

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == TICK:
            return self._tick(world)
        if event.type in (RECEIVER_OFFLINE, RECEIVER_ONLINE):
            return self._receiver(event)
        if event.device not in world.devices:
            return None  # a detector removed from the config: nothing to alarm about
        if event.type not in FROM_DETECTORS:
            return None  # our own derived events (missing, returned) say nothing of the radio
        out = self._detector_event(event)
        if event.type == HEARTBEAT:
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
        in every room, so a critical alarm until it answers again (one part per receiver)."""
        bus = str(event.data.get("bus", ""))
        if event.type == RECEIVER_OFFLINE:
            return Outcome(
                alarms=[RaiseAlarm(event.device, RECEIVER_OFFLINE, dict(event.data), part=bus)]
            )
        return Outcome(alarms=[ClearAlarm(event.device, RECEIVER_OFFLINE, part=bus)])

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
            self.alarm_at[device, type_] = event.ts
            out.alarms.append(RaiseAlarm(device, type_, dict(data)))
        elif type_ == CLEARED:
            for t in ALARMS:
                self.alarm_at.pop((device, t), None)
            out.alarms.extend(ClearAlarm(device, t) for t in ALARMS)
        elif type_ in WARNINGS:
            if type_ == LOW_BATTERY:
                self.low_at[device] = event.ts
            key = WARNINGS[type_]
            out.alarms.append(RaiseAlarm(device, type_, {key: data.get(key)}))
        elif type_ == TAMPER:
            if data.get("removed"):
                out.alarms.append(RaiseAlarm(device, type_, {"removed": True}))
            else:
                out.alarms.append(ClearAlarm(device, type_))
        elif type_ == TEST:
            # A detector that fails its own test will not sound in a fire: worth a warning.
            # One that passes shows its fault (a cleaned chamber) is over.
            if data.get("result") == "fail":
                out.alarms.append(RaiseAlarm(device, TEST_FAILED))
            else:
                out.alarms += [ClearAlarm(device, TEST_FAILED), ClearAlarm(device, FAULT)]
        return out

    def _tick(self, world: World) -> Outcome | None:
        now = world.now
        # Ticks come every second or so. A gap longer than a heartbeat period means the clock
        # stepped (a Pi without RTC syncing NTP) or the process stood still: nobody could have
        # been heard meanwhile, so start counting again instead of flagging every detector.
        if self._last_tick is not None and now - self._last_tick > self.heartbeat:
            self.last_seen = dict.fromkeys(self.last_seen, now)
            self.low_at = dict.fromkeys(self.low_at, now)  # nor can a day have gone by
            self.alarm_at = dict.fromkeys(self.alarm_at, now)
        elif self._last_tick is not None and now < self._last_tick:
            self.last_seen = {d: min(t, now) for d, t in self.last_seen.items()}
            self.low_at = {d: min(t, now) for d, t in self.low_at.items()}
            self.alarm_at = {k: min(t, now) for k, t in self.alarm_at.items()}
        self._last_tick = now
        out = self._supervision(world)
        for device, config in world.devices.items():
            if config.kind != KIND:
                continue
            limit = self.limit(config)
            if limit is None:
                continue  # unsupervised: silence says nothing (see _supervision)
            # Lazily at first sight, so a restart does not instantly flag every detector.
            seen = self.last_seen.setdefault(device, now)
            if device in self.missing or now - seen <= limit:
                continue
            self.missing.add(device)
            out = out or Outcome()
            data = {"last_seen": seen, "silent_seconds": round(now - seen)}
            out.events.append(Event(device, MISSING, "warning", data, ts=now))
            out.alarms.append(RaiseAlarm(device, MISSING, data))
        return self._silenced(world, out)

    def limit(self, detector: DeviceConfig) -> float | None:
        """Seconds of silence after which ``detector`` is missing; None: it is unsupervised."""
        period = _family().heartbeat_seconds(detector)
        return None if period is None else (self.override or period) * self.periods

    def _supervision(self, world: World) -> Outcome | None:
        """A legacy detector is a standing warning while it is configured, and never missing;
        one configured as a supervised model again (or removed) is not."""
        legacy = {d.id for d in world.devices_of(KIND) if not _family().supervised(d)}
        stale = [
            a for a in world.alarms.values()
            if (a.type == UNSUPERVISED and a.device not in legacy)
            or (a.type == MISSING and a.device in legacy)  # flagged before it was known legacy
        ]  # fmt: skip
        new = legacy - self.unsupervised
        self.unsupervised = legacy
        self.missing -= legacy
        if not (new or stale):
            return None
        out = Outcome()
        for device in sorted(new):
            model = _family().model(world.devices[device])
            out.alarms.append(RaiseAlarm(device, UNSUPERVISED, {"model": model}))
        out.alarms += [ClearAlarm(a.device, a.type) for a in stale]
        return out

    def _silenced(self, world: World, out: Outcome | None) -> Outcome | None:
        """Alarms whose repeats stopped: over (see the module's docstring)."""
        now = world.now
        for aid, alarm in world.alarms.items():
            if alarm.type not in ALARMS or alarm.device not in world.devices:
                continue
            # After a restart nobody knows when the last frame came: count from now.
            last = self.alarm_at.setdefault((alarm.device, alarm.type), now)
            if now - last >= self.silence:
                del self.alarm_at[alarm.device, alarm.type]
                out = out or Outcome()
                out.alarms.append(ClearAlarm(alarm.device, alarm.type))
                out.events.append(
                    Event(alarm.device, ALARM_ENDED, "info",
                          {"alarm": aid, "silent_seconds": round(now - last)}, ts=now)
                )  # fmt: skip
        return out
