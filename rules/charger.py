"""Charging-area safety rules: overheat and over-power cut a port (and the timers in
``charger_timers`` stop full batteries and long sessions).

Both trips are latched alarms, one part per port: the alarm stays on the list until the port
has cooled (or stopped drawing) **and** a person resets it; meanwhile ``port_on`` for that
port is refused (``charger_trips``). A port overheating under an acknowledged alarm re-raises
it. These rules only ever open relays: nothing here closes one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from drivers.modbus import events as ev
from gatewayd.alarms.catalogue import AlarmSpec
from gatewayd.model import TICK, Event
from gatewayd.schema import Float, Schema
from rules.charger_base import SAMPLE, ChargerRule, celsius, cut, part_active
from rules.charger_timers import FullRule, SessionCapRule
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, World

OVERHEAT, CABINET, SENSOR = ev.OVERHEAT, ev.CABINET_OVERHEAT, ev.SENSOR_FAULT
OVERPOWER = ev.OVERPOWER
CABINET_PART = "cabinet"

_LOOK = "Someone must look at the pile (charger, battery, socket) before the alarm is reset and "


class OverheatRule(ChargerRule):
    name: ClassVar[str] = ev.OVERHEAT_RULE
    schema: ClassVar[Schema] = {
        "port_max_celsius": Float(
            30, 120, default=60.0, doc="a socket at or above this is cut at once"
        ),
        "cabinet_max_celsius": Float(
            30, 120, default=70.0, doc="the cabinet at or above this cuts every port"
        ),
        "cooled_celsius": Float(
            0, 110, default=50.0, doc="below this a cut port has cooled: its alarm may be reset"
        ),
    }
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = (
        AlarmSpec(OVERHEAT, "critical", True, "reset by a person once every cut port is below "
                  "cooled_celsius", _LOOK + "the port switched back on.", part="port"),
        AlarmSpec(CABINET, "critical", True, "reset by a person once the cabinet is 10 °C below "
                  "cabinet_max_celsius", _LOOK + "its ports switched back on."),
        AlarmSpec(SENSOR, "warning", False, "when the sensor reads a plausible value again",
                  "A temperature sensor of the pile is broken: that socket is not watched for "
                  "heat. Have the pile repaired.", part="port"),
    )  # fmt: skip

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._sensor_reported: set[tuple[str, int]] = set()

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == ev.PORT_FAULT and event.data.get("fault") == "over_temperature":
            port = int(event.data["port"])  # the pile's own 85 °C trip has opened it already
            data = {"port": port, "temperature_c": None, "cut_by": "pile_trip"}
            return Outcome(alarms=[RaiseAlarm(event.device, OVERHEAT, data, part=str(port))])
        if event.type != SAMPLE:
            return None
        out = Outcome()
        limit = float(self.settings["port_max_celsius"])
        dev = event.device
        if event.data.get("source") == "summary":
            port = int(event.data.get("hottest_port", 0))
            temp = celsius(event.data.get("hottest_c"))
            if port and temp is None:
                self._sensor(out, dev, port, event.data.get("hottest_c"))
            elif port and temp is not None and temp >= limit:
                known = self.ports.get(dev, {}).get(port)
                if known is None or self.powered(known):
                    self._overheat(out, dev, port, temp, world.now)
            return out
        self.readings(event)
        for reading in event.data.get("ports", []):
            port, temp = int(reading["port"]), celsius(reading.get("temperature_c"))
            if reading.get("sensor_fault") or temp is None:
                self._sensor(out, dev, port, reading.get("temperature_c"))
                continue
            self._sensor_fine(out, world, dev, port)
            if temp >= limit and self.powered(reading):
                self._overheat(out, dev, port, temp, world.now)
            elif self._cooled(reading, temp) and part_active(world, dev, OVERHEAT, str(port)):
                out.alarms.append(ClearAlarm(dev, OVERHEAT, str(port)))
        self._cabinet(out, world, event)
        return out

    def _cooled(self, reading: Mapping[str, Any], temp: float) -> bool:
        cool = temp < float(self.settings["cooled_celsius"])
        return cool and reading.get("fault") != "over_temperature"

    def _cabinet(self, out: Outcome, world: World, event: Event) -> None:
        dev, raw = event.device, event.data.get("cabinet_c")
        cabinet = celsius(raw)
        if event.data.get("cabinet_sensor_fault") or (raw is not None and cabinet is None):
            self._sensor(out, dev, 0, raw)  # port 0: the cabinet's own sensor
            return
        if cabinet is None:
            return
        self._sensor_fine(out, world, dev, 0)
        top = float(self.settings["cabinet_max_celsius"])
        if cabinet >= top and self.may_cut((dev, 0), world.now):
            reason = f"{self.name}: cabinet {cabinet:.1f} °C ≥ {top:g} °C"
            out.actions.append(cut(dev, None, reason, self.name))
            out.alarms.append(RaiseAlarm(dev, CABINET, {"cabinet_c": cabinet}))
        elif cabinet < top - 10 and part_active(world, dev, CABINET):
            out.alarms.append(ClearAlarm(dev, CABINET))

    def _overheat(self, out: Outcome, dev: str, port: int, temp: float, now: float) -> None:
        if not self.may_cut((dev, port), now):
            return
        reason = (
            f"{self.name}: port {port} at {temp:.1f} °C ≥ {self.settings['port_max_celsius']:g} °C"
        )
        out.actions.append(cut(dev, port, reason, self.name))
        data = {"port": port, "temperature_c": temp, "cut_by": "gateway"}
        out.alarms.append(RaiseAlarm(dev, OVERHEAT, data, part=str(port)))

    def _sensor(self, out: Outcome, dev: str, port: int, temp: Any) -> None:
        if (dev, port) in self._sensor_reported:
            return
        self._sensor_reported.add((dev, port))
        part = CABINET_PART if port == 0 else str(port)
        out.alarms.append(RaiseAlarm(dev, SENSOR, {"port": port, "raw_c": temp}, part=part))

    def _sensor_fine(self, out: Outcome, world: World, dev: str, port: int) -> None:
        part = CABINET_PART if port == 0 else str(port)
        self._sensor_reported.discard((dev, port))
        if part_active(world, dev, SENSOR, part):
            out.alarms.append(ClearAlarm(dev, SENSOR, part))


class OverpowerRule(ChargerRule):
    name: ClassVar[str] = "charger_overpower"
    schema: ClassVar[Schema] = {
        "max_watts": Float(100, 5000, default=800.0, doc="a port drawing this much or more ..."),
        "seconds": Float(
            0, 600, default=5.0, doc="... for this long is cut (no e-bike charger needs it)"
        ),
    }
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = (
        AlarmSpec(OVERPOWER, "warning", True, "reset by a person once the port draws under "
                  "max_watts (after the cut: at once)", "Something other than an e-bike "
                  "charger, or a failing battery, drew too much: look before the port is reset "
                  "and switched back on.", part="port"),
    )  # fmt: skip

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._since: dict[tuple[str, int], float] = {}

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type not in (SAMPLE, TICK):
            return None
        self.readings(event)
        out = Outcome()
        limit = float(self.settings["max_watts"])
        for dev, ports in self.to_judge(event):
            for port, r in ports.items():
                key = (dev, port)
                watts = r.get("power_w") or 0
                if watts < limit or not self.powered(r):
                    self._since.pop(key, None)
                    if part_active(world, dev, OVERPOWER, str(port)):
                        out.alarms.append(ClearAlarm(dev, OVERPOWER, str(port)))
                    continue
                since = self._since.setdefault(key, world.now)
                if world.now - since >= float(self.settings["seconds"]) and self.may_cut(
                    key, world.now
                ):
                    reason = f"{self.name}: port {port} drew {watts} W ≥ {limit:g} W for {world.now - since:.0f} s"
                    out.actions.append(cut(dev, port, reason, self.name))
                    data = {"port": port, "power_w": watts}
                    out.alarms.append(RaiseAlarm(dev, OVERPOWER, data, part=str(port)))
        return out


__all__ = ["FullRule", "OverheatRule", "OverpowerRule", "SessionCapRule"]
