"""What the charging-area rules share: the latest port readings, cuts, sensor sanity.

Pure: no I/O, time is ``world.now``. What the rules judge is the ``charger.sample`` event the
modbus driver emits whenever a pile's reading moved (``source = "summary"``: the hottest port
of the pile, seen every fast period; ``source = "ports"``: every port's state, relay, power
and temperature). A sample carries exactly the reading a decision was made on, so a decision
can be replayed from the event log; ``world.states`` is not needed.

Sensor sanity: a socket temperature the pile reports as 3276.7 °C (0x7FFF, an open
thermistor; the driver passes it as ``None`` with ``sensor_fault``) or below −40 °C is a broken
sensor, never taken for a fire and never a cut. Any other reading, however high, is heat:
cutting a port is the safe side of doubt (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from drivers.modbus import events as ev
from gatewayd.model import TICK, Action, Alarm, Event, alarm_id
from rules.engine import Rule, World

SAMPLE = ev.SAMPLE
ACTIVE = ("charging", "full")
CLOCK_STEP_SECONDS = 120.0  # between two of a timer rule's events (ticks come every second)
MIN_PLAUSIBLE_C = -40.0

Key = tuple[str, int]  # (device, port)


def celsius(temp: Any) -> float | None:
    """The temperature if a sensor could have measured it, else None (a broken sensor)."""
    if isinstance(temp, bool) or not isinstance(temp, int | float):
        return None
    return float(temp) if temp >= MIN_PLAUSIBLE_C else None


def cut(device: str, port: int | None, reason: str, origin: str) -> Action:
    if port is None:
        return Action(device, "all_off", {}, reason=reason, origin=origin)
    return Action(device, "port_off", {"port": port}, reason=reason, origin=origin)


def part_active(world: World, device: str, type_: str, part: str | None = None) -> Alarm | None:
    """The alarm if its condition is present (at ``part``, when given), else None."""
    alarm = world.alarms.get(alarm_id(device, type_))
    if alarm is None or not alarm.active:
        return None
    if part is not None and not alarm.parts.get(part, False):
        return None
    return alarm


class ChargerRule(Rule):
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

    def to_judge(self, event: Event) -> Iterable[tuple[str, Mapping[int, Mapping[str, Any]]]]:
        """(pile, its ports) to judge on ``event``: a tick judges every pile (timers run
        between samples); anything else only the pile it is about, so a line of piles does
        not judge every port of every pile on each pile's reading (the cut waits for that)."""
        if event.type == TICK:
            return self.ports.items()
        ports = self.ports.get(event.device)
        return [(event.device, ports)] if ports is not None else []

    def powered(self, reading: Mapping[str, Any]) -> bool:
        return reading.get("relay") is not False or bool(reading.get("power_w"))

    def may_cut(self, key: Key, now: float) -> bool:
        last = self._cut_at.get(key)
        if last is not None and now - last < self.recut_seconds:
            return False
        self._cut_at[key] = now
        return True
