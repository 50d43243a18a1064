"""Charging-area safety rules: overheat, over-power, full battery, session cap.

Pure: no I/O, time is ``world.now``. What the rules judge is the ``charger.sample`` event the
modbus driver emits whenever a pile's reading moved (``source = "summary"``: the hottest port
of the pile, seen every fast period; ``source = "ports"``: every port's state, relay, power
and temperature). Timers (float period, session cap, over-power duration) are checked on
samples and on ``gateway.tick``. A sample carries exactly the reading the decision was made
on, so a decision can be replayed from the event log; ``world.states`` is not needed.

Sensor sanity: a socket temperature the pile reports as 3276.7 °C (0x7FFF, an open
thermistor; the driver passes it as ``None`` with ``sensor_fault``) or below −40 °C is a broken
sensor: a ``charger.sensor_fault`` warning, never taken for a fire and never a cut.

These rules only ever open relays. Nothing here closes one: after an overheat a person looks,
resolves the alarm, and switches the port back on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from gatewayd.model import TICK, Action, Event, alarm_id
from gatewayd.schema import Float, Schema
from rules.engine import Outcome, RaiseAlarm, Rule, World

SAMPLE = "charger.sample"
ACTIVE = ("charging", "full")
CLOCK_STEP_SECONDS = 120.0  # between two of a timer rule's events (ticks come every second)
MIN_PLAUSIBLE_C = -40.0

Key = tuple[str, int]  # (device, port)


def _celsius(temp: Any) -> float | None:
    """The temperature if a sensor could have measured it, else None (a broken sensor)."""
    if isinstance(temp, bool) or not isinstance(temp, int | float):
        return None
    # Only the sensor's own fault codes (decoded as None by the driver) and readings below
    # -40 °C are taken as a broken sensor; any other reading, however high, is heat: cutting
    # a port is the safe side of doubt (docs/reliability.md).
    if temp >= MIN_PLAUSIBLE_C:
        return float(temp)
    return None


def _cut(device: str, port: int | None, reason: str, origin: str) -> Action:
    if port is None:
        return Action(device, "all_off", {}, reason=reason, origin=origin)
    return Action(device, "port_off", {"port": port}, reason=reason, origin=origin)


class _ChargerRule(Rule):
    """Keeps the latest port readings per pile, so ticks can judge timers between samples."""

    #: Seconds before a cut is asked again for a port still reported powered.
    recut_seconds: ClassVar[float] = 30.0

    def __init__(self, settings: Mapping[str, Any]) -> None:
        defaults = {k: f.default for k, f in self.schema.items()}
        super().__init__({**defaults, **settings})
        self.ports: dict[str, dict[int, Mapping[str, Any]]] = {}
        self._cut_at: dict[Key, float] = {}

    def readings(self, event: Event) -> Iterable[Mapping[str, Any]]:
        if event.type == SAMPLE and event.data.get("source") == "ports":
            ports = {int(p["port"]): p for p in event.data.get("ports", [])}
            self.ports[event.device] = ports
        return [p for ports in self.ports.values() for p in ports.values()]

    def powered(self, reading: Mapping[str, Any]) -> bool:
        return reading.get("relay") is not False or bool(reading.get("power_w"))

    def may_cut(self, key: Key, now: float) -> bool:
        last = self._cut_at.get(key)
        if last is not None and now - last < self.recut_seconds:
            return False
        self._cut_at[key] = now
        return True


class OverheatRule(_ChargerRule):
    name: ClassVar[str] = "charger_overheat"
    schema: ClassVar[Schema] = {
        "port_max_celsius": Float(
            30, 120, default=60.0, doc="a socket at or above this is cut at once"
        ),
        "cabinet_max_celsius": Float(
            30, 120, default=70.0, doc="the cabinet at or above this cuts every port"
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.hot: dict[str, set[int]] = {}
        self._sensor_reported: set[Key] = set()

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == "charger.port_fault" and event.data.get("fault") == "over_temperature":
            port = int(event.data["port"])  # the pile's own 85 °C trip has opened it already
            return Outcome(alarms=[self._alarm(event.device, port, None, "pile_trip")])
        if event.type != SAMPLE:
            return None
        out = Outcome()
        limit = float(self.settings["port_max_celsius"])
        dev = event.device
        if event.data.get("source") == "summary":
            port = int(event.data.get("hottest_port", 0))
            temp = _celsius(event.data.get("hottest_c"))
            if port and temp is None:
                self._sensor(out, dev, port, event.data.get("hottest_c"))
            elif port and temp is not None and temp >= limit:
                known = self.ports.get(dev, {}).get(port)
                if known is None or self.powered(known):
                    self._overheat(out, dev, port, temp, world.now)
            return out
        self.readings(event)
        for reading in event.data.get("ports", []):
            port, temp = int(reading["port"]), _celsius(reading.get("temperature_c"))
            if reading.get("sensor_fault") or temp is None:
                self._sensor(out, dev, port, reading.get("temperature_c"))
            elif temp >= limit and self.powered(reading):
                self._overheat(out, dev, port, temp, world.now)
        cabinet = _celsius(event.data.get("cabinet_c"))
        raw_cabinet = event.data.get("cabinet_c")
        if event.data.get("cabinet_sensor_fault") or (raw_cabinet is not None and cabinet is None):
            self._sensor(out, dev, 0, raw_cabinet)  # port 0: the cabinet's own sensor
        hot_cabinet = cabinet is not None and cabinet >= float(self.settings["cabinet_max_celsius"])
        if hot_cabinet and self.may_cut((dev, 0), world.now):
            reason = f"{self.name}: cabinet {cabinet:.1f} °C ≥ {self.settings['cabinet_max_celsius']:g} °C"
            out.actions.append(_cut(dev, None, reason, self.name))
            out.alarms.append(
                RaiseAlarm(dev, "charger.cabinet_overheat", "critical", {"cabinet_c": cabinet})
            )
        return out

    def _overheat(self, out: Outcome, dev: str, port: int, temp: float, now: float) -> None:
        if not self.may_cut((dev, port), now):
            return
        reason = (
            f"{self.name}: port {port} at {temp:.1f} °C ≥ {self.settings['port_max_celsius']:g} °C"
        )
        out.actions.append(_cut(dev, port, reason, self.name))
        out.alarms.append(self._alarm(dev, port, temp, "gateway"))

    def _alarm(self, dev: str, port: int, temp: float | None, by: str) -> RaiseAlarm:
        hot = self.hot.setdefault(dev, set())
        hot.add(port)
        data = {"port": port, "ports": sorted(hot), "temperature_c": temp, "cut_by": by}
        return RaiseAlarm(dev, "charger.overheat", "critical", data)

    def _sensor(self, out: Outcome, dev: str, port: int, temp: Any) -> None:
        if (dev, port) in self._sensor_reported:
            return
        self._sensor_reported.add((dev, port))
        out.alarms.append(
            RaiseAlarm(dev, "charger.sensor_fault", "warning", {"port": port, "raw_c": temp})
        )

    def permit(self, action: Action, world: World) -> str | None:
        if action.name != "port_on":
            return None
        if world.fire_mode:
            return "fire mode: charging stays off until the fire alarm is reset"
        dev = action.device
        if alarm_id(dev, "charger.cabinet_overheat") in world.alarms:
            return "the pile's cabinet overheated; resolve that alarm first"
        alarm = world.alarms.get(alarm_id(dev, "charger.overheat"))
        if alarm is None:
            self.hot.pop(dev, None)  # resolved by a person: forget what we cut
            return None
        ports = set(alarm.data.get("ports", [])) | self.hot.get(dev, set())
        port = action.args.get("port")
        if not ports or port in ports:
            return f"port {port} overheated; resolve the overheat alarm first"
        return None


class OverpowerRule(_ChargerRule):
    name: ClassVar[str] = "charger_overpower"
    schema: ClassVar[Schema] = {
        "max_watts": Float(100, 5000, default=800.0, doc="a port drawing this much or more ..."),
        "seconds": Float(
            0, 600, default=5.0, doc="... for this long is cut (no e-bike charger needs it)"
        ),
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self._since: dict[Key, float] = {}

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type not in (SAMPLE, TICK):
            return None
        self.readings(event)
        out = Outcome()
        limit = float(self.settings["max_watts"])
        for dev, ports in self.ports.items():
            for port, r in ports.items():
                key = (dev, port)
                watts = r.get("power_w") or 0
                if watts < limit or not self.powered(r):
                    self._since.pop(key, None)
                    continue
                since = self._since.setdefault(key, world.now)
                if world.now - since >= float(self.settings["seconds"]) and self.may_cut(
                    key, world.now
                ):
                    reason = f"{self.name}: port {port} drew {watts} W ≥ {limit:g} W for {world.now - since:.0f} s"
                    out.actions.append(_cut(dev, port, reason, self.name))
                    out.alarms.append(
                        RaiseAlarm(
                            dev, "charger.overpower", "warning", {"port": port, "power_w": watts}
                        )
                    )
        return out


class _TimerRule(_ChargerRule):
    """Cuts a port once a per-port timer has run for ``limit_seconds()``."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self._since: dict[Key, float] = {}
        self._done: set[Key] = set()
        self._last_now: float | None = None

    def running(self, reading: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def limit_seconds(self) -> float:
        raise NotImplementedError

    def describe(self, port: int, seconds: float) -> str:
        raise NotImplementedError

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type not in (SAMPLE, TICK, "charger.port_started"):
            return None
        self.readings(event)
        self._follow_clock(world.now)
        if event.type == "charger.port_started":
            self._since.setdefault((event.device, int(event.data["port"])), world.now)
        out = Outcome()
        for dev, ports in self.ports.items():
            for port, r in ports.items():
                key = (dev, port)
                if not (self.powered(r) and self.running(r)):
                    self._since.pop(key, None)
                    self._done.discard(key)
                    continue
                since = self._since.setdefault(key, world.now)
                if world.now - since >= self.limit_seconds() and key not in self._done:
                    self._done.add(key)
                    out.actions.append(
                        _cut(dev, port, self.describe(port, world.now - since), self.name)
                    )
        return out

    def _follow_clock(self, now: float) -> None:
        """Ticks come every second: a jump backwards, or forwards by minutes, is the clock
        being set (a Pi without RTC booting in 1970, then NTP), not time passing. Timers keep
        the time they had, so no session is cut (or spared) by a clock step."""
        last, self._last_now = self._last_now, now
        if last is None:
            return
        step = now - last
        if step < 0 or step > CLOCK_STEP_SECONDS:
            for key in self._since:
                self._since[key] += step


class FullRule(_TimerRule):
    name: ClassVar[str] = "charger_full"
    schema: ClassVar[Schema] = {
        "full_watts": Float(
            1, 200, default=30.0, doc="below this a battery is full (float current)"
        ),
        "float_minutes": Float(
            0.05, 600, default=45.0, doc="how long a full battery may float before the cut"
        ),
    }

    def running(self, reading: Mapping[str, Any]) -> bool:
        return reading.get("state") in ACTIVE and (reading.get("power_w") or 0) < float(
            self.settings["full_watts"]
        )

    def limit_seconds(self) -> float:
        return float(self.settings["float_minutes"]) * 60

    def describe(self, port: int, seconds: float) -> str:
        return f"{self.name}: port {port} under {self.settings['full_watts']:g} W for {seconds / 60:.0f} min"


class SessionCapRule(_TimerRule):
    name: ClassVar[str] = "charger_session_cap"
    schema: ClassVar[Schema] = {
        "max_hours": Float(
            0.5, 48, default=10.0, doc="longest charging session; restarts with the gateway"
        ),
    }

    def running(self, reading: Mapping[str, Any]) -> bool:
        return reading.get("state") in ACTIVE

    def limit_seconds(self) -> float:
        return float(self.settings["max_hours"]) * 3600

    def describe(self, port: int, seconds: float) -> str:
        return f"{self.name}: port {port} session reached {seconds / 3600:.1f} h"
