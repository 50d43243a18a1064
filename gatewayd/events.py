"""The gateway's own event types (``device`` = the gateway id), declared once.

Each family declares its devices' events (``Family.events``); these are the house's: fire mode,
what people did about alarms, what the runtime could not do, what the SD card did. The
contract (docs/contract/) is generated from both.
"""

from __future__ import annotations

from collections.abc import Mapping

from gatewayd.alarms.catalogue import FIRE_MODE, STATE_LOST
from gatewayd.family import EventSpec, fields
from gatewayd.model import TICK

FIRE_RESET = "gateway.fire_reset"
ALARM_ACKED = "gateway.alarm_acked"
ALARM_RESET = "gateway.alarm_reset"
ACTION_FAILED = "gateway.action_failed"
DRIVER_FAILED = "gateway.driver_failed"
OUTBOX_DAMAGED = "gateway.outbox_damaged"

_PERSON = fields(alarm="string", type="string", user="string", note="string?", source="string")

EVENTS: Mapping[str, EventSpec] = {
    TICK: EventSpec("info", "The rules' clock (never published).", {}, internal=True),
    FIRE_MODE: EventSpec("critical", "The house entered fire mode: every charger cut, escape "
                         "doors released.", fields(trigger="string", type="string",
                                                   room="string", what="string")),
    FIRE_RESET: EventSpec("warning", "A person reset fire mode: escape doors lock again.",
                          fields(user="string", note="string?", source="string")),
    ALARM_ACKED: EventSpec("info", "A person acknowledged an alarm.", _PERSON),
    ALARM_RESET: EventSpec("warning", "A person reset a latched alarm whose condition was over.",
                           _PERSON),
    ACTION_FAILED: EventSpec("warning", "A rule's action failed (critical when it is retried: "
                             "an escape door, a relock).",
                             fields(action="string", args="{}", rule="string", reason="string",
                                    error="string", code="string", retry="boolean"),
                             severities=("warning", "critical")),
    DRIVER_FAILED: EventSpec("warning", "A bus's driver failed and is restarted with backoff.",
                             fields(bus="string", reason="string", restarts="integer")),
    STATE_LOST: EventSpec("critical", "No readable copy of the gateway's state was left: every "
                          "charger was switched off.", fields(damaged="string[]")),
    OUTBOX_DAMAGED: EventSpec("warning", "Damaged outbox records were skipped (the SD card); the "
                              "rest was kept.", fields(records="integer", file="string")),
}  # fmt: skip
