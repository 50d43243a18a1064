"""What the contract is generated from: the installed device families and the gateway's own
declarations (its events, actions, alarm types and result codes), gathered in one value so the
generator is a pure function of it (a test hands it a family of its own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewayd.alarms.catalogue import AlarmSpec, Catalogue
from gatewayd.family import EventSpec, Family
from gatewayd.schema import Schema

#: Who owns the gateway's own events and actions (``device`` = the gateway id).
GATEWAY = "gateway"


@dataclass(frozen=True)
class Sources:
    families: Mapping[str, Family]
    gateway_events: Mapping[str, EventSpec]
    gateway_actions: Mapping[str, Schema]
    alarm_types: Mapping[str, AlarmSpec]
    #: Every ``code`` of a command result.
    codes: tuple[str, ...]
    #: The default ``[mqtt] topic_prefix``.
    prefix: str
    #: Patterns of a gateway's and a device's id, as the config checks them.
    id_pattern: str
    #: Patterns of the command envelope's id and its device/action/user, as the gate checks them.
    command_id_pattern: str
    command_text_pattern: str

    def events(self) -> dict[str, tuple[str, EventSpec]]:
        """Every published event type, sorted: its owner (a kind, or ``gateway``) and spec.
        Internal events (the rules' clock, readings) never leave the gateway: left out."""
        found: dict[str, tuple[str, EventSpec]] = {}
        owners = [(GATEWAY, self.gateway_events)]
        owners += [(kind, f.events) for kind, f in sorted(self.families.items())]
        for owner, events in owners:
            for type_, spec in events.items():
                if spec.internal:
                    continue
                if type_ in found and found[type_][1] != spec:
                    raise ValueError(
                        f"event type {type_} declared by both {found[type_][0]} and {owner}"
                    )
                found.setdefault(type_, (owner, spec))
        return dict(sorted(found.items()))

    def actions(self) -> dict[str, dict[str, Schema]]:
        """Action name -> owner (a kind, or ``gateway``) -> the schema of its ``args``."""
        found: dict[str, dict[str, Schema]] = {}
        for name, args in self.gateway_actions.items():
            found.setdefault(name, {})[GATEWAY] = args
        for kind, family in sorted(self.families.items()):
            for name, schema in family.action_schemas().items():
                found.setdefault(name, {})[kind] = schema
        return dict(sorted(found.items()))

    def severities(self, spec: EventSpec) -> list[str]:
        return list(spec.severities or (spec.severity,))


def installed() -> Sources:
    """The contract of a gateway with the families and rules installed here."""
    from gatewayd import events, plugins
    from gatewayd.commands.gate import CODES, GATEWAY_ACTIONS, ID_RX, TEXT_RX
    from gatewayd.config_schema import ID_PATTERN, MQTT_SCHEMA

    families = plugins.families()
    declared: list[AlarmSpec] = [s for f in families.values() for s in f.alarm_types]
    declared += [s for rule in plugins.rule_classes() for s in rule.alarm_types]
    prefix: Any = MQTT_SCHEMA["topic_prefix"].default
    return Sources(
        families=families,
        gateway_events=events.EVENTS,
        gateway_actions=GATEWAY_ACTIONS,
        alarm_types=Catalogue(declared).all(),
        codes=CODES,
        prefix=str(prefix),
        id_pattern=ID_PATTERN,
        command_id_pattern=ID_RX.pattern,
        command_text_pattern=TEXT_RX.pattern,
    )
