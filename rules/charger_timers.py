"""Charging timers: a full battery stopped after it has floated a while, a session capped.

Pure: no I/O, time is ``world.now``; timers are checked on samples and on ``gateway.tick``,
and a clock step (a Pi without RTC setting its clock) neither cuts nor spares a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from drivers.modbus.events import PORT_STARTED
from gatewayd.model import TICK, Event
from gatewayd.schema import Float, Schema
from rules.charger_base import ACTIVE, CLOCK_STEP_SECONDS, SAMPLE, ChargerRule, Key, cut
from rules.engine import Outcome, World


class TimerRule(ChargerRule):
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
        if event.type not in (SAMPLE, TICK, PORT_STARTED):
            return None
        self.readings(event)
        self._follow_clock(world.now)
        if event.type == PORT_STARTED:
            self._since.setdefault((event.device, int(event.data["port"])), world.now)
        out = Outcome()
        for dev, ports in self.to_judge(event):
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
                        cut(dev, port, self.describe(port, world.now - since), self.name)
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


class FullRule(TimerRule):
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


class SessionCapRule(TimerRule):
    name: ClassVar[str] = "charger_session_cap"
    schema: ClassVar[Schema] = {
        # 8 h: the longest single charge the e-bike charging guidance allows (定时断电); a
        # healthy battery is full in 6 to 8 h, and an unattended overnight charge is the risk.
        "max_hours": Float(
            0.5, 48, default=8.0, doc="longest charging session; restarts with the gateway"
        ),
    }

    def running(self, reading: Mapping[str, Any]) -> bool:
        return reading.get("state") in ACTIVE

    def limit_seconds(self) -> float:
        return float(self.settings["max_hours"]) * 3600

    def describe(self, port: int, seconds: float) -> str:
        return f"{self.name}: port {port} session reached {seconds / 3600:.1f} h"
