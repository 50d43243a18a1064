"""The rules engine: runs every rule over every event and gathers what they decide.

Rules never do I/O and never block. They may keep small in-memory state (a timer's start, a
counter), but everything that must survive a restart belongs in the world state the runtime
persists (alarms, fire mode).
"""

from __future__ import annotations

import logging
from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gatewayd.driver import DeviceConfig
from gatewayd.model import Action, Alarm, Event, Severity
from gatewayd.schema import Schema

log = logging.getLogger("gatewayd.rules")


@dataclass
class World:
    """What rules may look at: configuration, latest device states, alarms, fire mode."""

    gateway_id: str
    devices: Mapping[str, DeviceConfig]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: Mapping[str, Alarm] = field(default_factory=dict)
    fire_mode: bool = False
    now: float = 0.0

    def state(self, device: str) -> Mapping[str, Any]:
        return self.states.get(device, {})


@dataclass(frozen=True)
class RaiseAlarm:
    device: str
    type: str
    severity: Severity
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClearAlarm:
    device: str
    type: str


@dataclass
class Outcome:
    """What a rule decided. Empty by default; rules fill only what they need."""

    actions: list[Action] = field(default_factory=list)
    alarms: list[RaiseAlarm | ClearAlarm] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    fire_mode: bool | None = None  # True enters fire mode; only a reset leaves it

    def merge(self, other: Outcome) -> None:
        self.actions.extend(other.actions)
        self.alarms.extend(other.alarms)
        self.events.extend(other.events)
        if other.fire_mode:
            self.fire_mode = True


class Rule(ABC):
    """Base of every rule. Override the hooks you need."""

    #: The rule's name; its settings live in ``[rules.<name>]``.
    name: ClassVar[str]
    #: Its keys, with defaults an installer would accept.
    schema: ClassVar[Schema] = {}

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def on_event(self, event: Event, world: World) -> Outcome | None:
        """Called for every event, ticks (``gateway.tick``) included."""
        return None

    def permit(self, action: Action, world: World) -> str | None:
        """Return a reason to refuse ``action`` (the command's code is then ``forbidden``)."""
        return None


class Engine:
    """Holds the active rules; a failing rule is logged and skipped, never fatal."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.actions_by_rule: dict[str, int] = {}

    @classmethod
    def from_config(cls, settings: Mapping[str, Mapping[str, Any]]) -> Engine:
        from gatewayd import plugins

        return cls([rc(settings.get(rc.name, {})) for rc in plugins.rule_classes()])

    def handle(self, event: Event, world: World) -> Outcome:
        total = Outcome()
        for rule in self.rules:
            try:
                out = rule.on_event(event, world)
            except Exception:  # a bug in one rule must not silence the others
                log.exception("rule %s failed on %s from %s", rule.name, event.type, event.device)
                continue
            if out is not None:
                if out.actions:
                    self.actions_by_rule[rule.name] = self.actions_by_rule.get(rule.name, 0) + len(
                        out.actions
                    )
                total.merge(out)
        return total

    def permit(self, action: Action, world: World) -> str | None:
        for rule in self.rules:
            try:
                reason = rule.permit(action, world)
            except Exception:  # fail safe: a broken rule refuses
                log.exception(
                    "rule %s failed deciding %s on %s", rule.name, action.name, action.device
                )
                return f"rule {rule.name} failed"
            if reason:
                return reason
        return None
