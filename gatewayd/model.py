"""The normalized vocabulary every layer shares: Event, Action, Alarm.

Drivers turn wire bytes into Events and carry out Actions; rules turn Events into Actions and
Alarms; the uplink turns all of it into MQTT payloads. None of them needs to know the others.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

# Event ids: unique per gateway and stable across retries. A boot prefix (time + pid) keeps
# them unique across restarts without a persistent counter; the counter orders them.
_BOOT = f"{int(time.time()):x}{os.getpid() & 0xFFFF:04x}"
_counter = itertools.count(1)


def new_event_id() -> str:
    return f"{_BOOT}-{next(_counter):x}"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at a device (or the gateway itself)."""

    device: str
    type: str
    severity: Severity = "info"
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    id: str = field(default_factory=new_event_id)

    @property
    def kind(self) -> str:
        """The part before the dot: ``smoke`` in ``smoke.alarm``."""
        return self.type.partition(".")[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "device": self.device,
            "type": self.type,
            "severity": self.severity,
            "data": dict(self.data),
        }


# Ticks drive timers in rules; they never leave the gateway.
TICK = "gateway.tick"
# Event types ending in ".sample" (e.g. ``charger.sample``) are readings for the rules: they
# never leave the gateway either (the platform gets them as telemetry and retained state).
SAMPLE_SUFFIX = ".sample"


def is_internal(type_: str) -> bool:
    """True for events that feed the rules but are not published."""
    return type_ == TICK or type_.endswith(SAMPLE_SUFFIX)


@dataclass(frozen=True, slots=True)
class Action:
    """One actuation for a driver: ``port_off`` on ``pile-1`` with ``{"port": 3}``."""

    device: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    origin: str = ""  # the rule's name, or "command:<user>" for a remote command
    #: Done when the action may move something (a remote command's id is on disk). A driver
    #: whose ``overlaps_ready`` is true awaits it itself, just before it actuates, and may
    #: talk to the device before that (read a challenge); any other driver gets the action
    #: only once it is done.
    ready: Awaitable[None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm condition now active on this gateway."""

    id: str
    device: str
    type: str
    severity: Severity
    since: float
    acked_by: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "type": self.type,
            "severity": self.severity,
            "since": self.since,
            "acked_by": self.acked_by,
            "data": dict(self.data),
        }


def alarm_id(device: str, type_: str) -> str:
    """Alarms are keyed by what and where, so raising one twice is idempotent."""
    return f"{device}/{type_}"
