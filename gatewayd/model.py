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


#: How hard the runtime keeps at an action that failed: ``once`` reports the failure;
#: ``while_fire`` tries again every few seconds while fire mode lasts (escape doors);
#: ``until_done`` until the device confirms (relocking the entrance after a fire), unless the
#: rules come to forbid it.
Persist = Literal["once", "while_fire", "until_done"]


@dataclass(frozen=True, slots=True)
class Action:
    """One actuation for a driver: ``port_off`` on ``pile-1`` with ``{"port": 3}``.

    ``reason`` is for people (logs, events); the runtime's safety handling reads only the
    typed fields: ``persist``, ``alarm`` and ``expect``.
    """

    device: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    origin: str = ""  # the rule's name, "command:<user>" (remote) or "control:uid<n>" (local)
    persist: Persist = "once"
    #: Alarm type raised on the action's device while the action fails; cleared once done.
    alarm: str | None = None
    #: What the device must report once done (``{"lock": "held_open"}``): checked against
    #: the action's result, or a fresh ``status`` when the result does not say.
    expect: Mapping[str, Any] = field(default_factory=dict)
    #: The event (type, severity) that says the action was done and confirmed.
    done_event: tuple[str, Severity] | None = None
    #: Done when the action may move something (a remote command's id is on disk). A driver
    #: whose ``overlaps_ready`` is true awaits it itself, just before it actuates, and may
    #: talk to the device before that (read a challenge); any other driver gets the action
    #: only once it is done.
    ready: Awaitable[None] | None = field(default=None, compare=False, repr=False)

    @property
    def asked_by_person(self) -> bool:
        """A person's request (a remote command, the control socket), not a rule's decision."""
        return self.origin.startswith(("command:", "control:"))


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm on this gateway's list, in the lifecycle of ``gatewayd.alarms`` (ISA-18.2:
    active/cleared × unacknowledged/acknowledged; latched alarms wait for a person's reset).

    ``parts`` are the places the condition was seen (a pile's ports, the detectors behind a
    fire), each ``True`` while its condition is present: the alarm is ``active`` while any
    part is, or while it has no parts and its condition has not cleared.
    """

    id: str
    device: str
    type: str
    severity: Severity
    since: float
    acked_by: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    latched: bool = False
    active: bool = True
    parts: Mapping[str, bool] = field(default_factory=dict)
    updated: float = 0.0  # the latest occurrence
    count: int = 1  # occurrences: a re-raise counts one more
    acked_at: float | None = None
    cleared_at: float | None = None  # when the condition went (latched alarms then await reset)

    @property
    def acked(self) -> bool:
        return self.acked_by is not None

    @property
    def active_parts(self) -> list[str]:
        return sorted((p for p, on in self.parts.items() if on), key=_part_order)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "type": self.type,
            "severity": self.severity,
            "since": self.since,
            "state": "active" if self.active else "cleared",
            "latched": self.latched,
            "acked_by": self.acked_by,
            "acked_at": self.acked_at,
            "updated": self.updated or self.since,
            "count": self.count,
            "parts": {p: ("active" if on else "cleared") for p, on in self.parts.items()},
            "data": dict(self.data),
        }


def _part_order(part: str) -> tuple[int, int, str]:
    """Ports sort as numbers (2 before 10), other parts by name."""
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


def alarm_id(device: str, type_: str) -> str:
    """Alarms are keyed by what and where, so raising one twice is idempotent."""
    return f"{device}/{type_}"
