"""The rules engine: runs every rule over every event and gathers what they decide.

Rules never do I/O and never block. They may keep small in-memory state (a timer's start, a
counter), but everything that must survive a restart belongs in the world state the runtime
persists: alarms, fire mode among them (fire mode is the ``gateway.fire_mode`` alarm). Each
rule declares the alarm types it raises (``alarm_types``) and may refuse an action
(``permit``) or a person's reset of an alarm (``permit_reset``).
"""

from __future__ import annotations

import logging
from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gatewayd.alarms.catalogue import AlarmSpec, Catalogue
from gatewayd.driver import DeviceConfig
from gatewayd.family import Family
from gatewayd.model import Action, Alarm, Event
from gatewayd.schema import Schema

log = logging.getLogger("gatewayd.rules")


def _installed_families() -> Mapping[str, Family]:
    from gatewayd import plugins

    return plugins.families()


@dataclass
class World:
    """What rules may look at: configuration, latest device states, alarms, fire mode, and the
    device families (what each kind of device is)."""

    gateway_id: str
    devices: Mapping[str, DeviceConfig]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: Mapping[str, Alarm] = field(default_factory=dict)
    fire_mode: bool = False
    now: float = 0.0
    families: Mapping[str, Family] = field(default_factory=_installed_families)

    def state(self, device: str) -> Mapping[str, Any]:
        return self.states.get(device, {})

    def family(self, device: DeviceConfig) -> Family:
        return self.families.get(device.kind) or Family()

    def devices_of(self, kind: str) -> list[DeviceConfig]:
        return [d for d in self.devices.values() if d.kind == kind]


@dataclass(frozen=True)
class RaiseAlarm:
    """The condition of alarm ``type`` is present at ``device`` (at ``part`` of it: a port,
    the detector behind a fire). Severity and latching are the type's (``alarm_types``)."""

    device: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    part: str | None = None


@dataclass(frozen=True)
class ClearAlarm:
    """The condition is over (at ``part``; everywhere when None)."""

    device: str
    type: str
    part: str | None = None


@dataclass
class Outcome:
    """What a rule decided. Empty by default; rules fill only what they need."""

    actions: list[Action] = field(default_factory=list)
    alarms: list[RaiseAlarm | ClearAlarm] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def merge(self, other: Outcome) -> None:
        self.actions.extend(other.actions)
        self.alarms.extend(other.alarms)
        self.events.extend(other.events)


class Rule(ABC):
    """Base of every rule. Override the hooks you need."""

    #: The rule's name; its settings live in ``[rules.<name>]``.
    name: ClassVar[str]
    #: Its keys, with defaults an installer would accept.
    schema: ClassVar[Schema] = {}
    #: The alarm types it raises: severity, latched or not, how each clears.
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = ()

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    def on_event(self, event: Event, world: World) -> Outcome | None:
        """Called for every event, ticks (``gateway.tick``) included."""
        return None

    def permit(self, action: Action, world: World) -> str | None:
        """Return a reason to refuse ``action`` (the command's code is then ``forbidden``)."""
        return None

    def permit_reset(self, alarm: Alarm, world: World) -> str | None:
        """Return a reason to refuse a person's reset of ``alarm`` (its condition is still
        there, as this rule sees the world)."""
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

    def fresh(self, name: str) -> Rule | None:
        """A new instance of the rule ``name``, same settings, knowing nothing yet (a fire
        drill's own fire rule: gatewayd.drill). None when no such rule runs."""
        rule = next((r for r in self.rules if r.name == name), None)
        return None if rule is None else type(rule)(rule.settings)

    def catalogue(self) -> Catalogue:
        """Every alarm type: the gateway's own, the families' and the rules'."""
        from gatewayd.plugins import Families

        families = _installed_families()
        used = families.loaded() if isinstance(families, Families) else families.values()
        return Catalogue(
            [*(s for f in used for s in f.alarm_types),
             *(s for rule in self.rules for s in rule.alarm_types)],
            later=lambda: (s for f in families.values() for s in f.alarm_types),
        )  # fmt: skip

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

    def permit_reset(self, alarm: Alarm, world: World) -> str | None:
        for rule in self.rules:
            try:
                reason = rule.permit_reset(alarm, world)
            except Exception:  # fail safe: a broken rule refuses
                log.exception("rule %s failed deciding a reset of %s", rule.name, alarm.id)
                return f"rule {rule.name} failed"
            if reason:
                return reason
        return None
