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
FIRE_CONFIRM = "gateway.fire_confirm"  # a person said the fire is real
FIRE_CONFIRMED = "gateway.fire_confirmed"
ALARM_ACKED = "gateway.alarm_acked"
ALARM_RESET = "gateway.alarm_reset"
ACTION_FAILED = "gateway.action_failed"
DRIVER_FAILED = "gateway.driver_failed"
OUTBOX_DAMAGED = "gateway.outbox_damaged"
DRILL = "gateway.drill"
#: The member of an event's ``data`` (and of a command result's) that says it is a fire
#: drill's (gatewayd.drill), not a fire: ``"drill": true``. Any event type may carry it.
DRILL_FLAG = "drill"
#: The ``origin`` of the actions a drill carries out (``Action.origin``).
DRILL_ORIGIN = "drill"


def drill_mark(origin: str) -> dict[str, bool]:
    """``{"drill": true}`` for a driver's report of what a drill's action did (a pile's cut),
    else nothing."""
    return {DRILL_FLAG: True} if origin == DRILL_ORIGIN else {}


_PERSON = fields(alarm="string", type="string", user="string", note="string?", source="string")

EVENTS: Mapping[str, EventSpec] = {
    TICK: EventSpec("info", "The rules' clock (never published).", {}, internal=True),
    FIRE_MODE: EventSpec("critical", "The house entered fire mode: every charger cut, every "
                         "detector sounding; escape doors released once the fire is confirmed "
                         "(gateway.fire_confirmed), or at once with door_release = any_alarm.", fields(trigger="string", type="string",
                                                   room="string", what="string",
                                                   stage="string", confirmed_by="string?")),
    FIRE_CONFIRM: EventSpec("warning", "A person confirmed the fire (the platform's signed "
                            "fire_confirm): gateway.fire_confirmed follows.",
                            fields(alarm="string", user="string", note="string?",
                                   source="string")),
    FIRE_CONFIRMED: EventSpec("critical", "The fire is confirmed (a second, independent "
                              "signal, or a person): the escape doors are released. `by` is "
                              "the confirming event's type (smoke.alarm of a second detector, "
                              "smoke.heat_alarm, charger.status for a pile's smoke input, "
                              "charger.port_cut for an overheat cut) or fire_confirm.",
                              fields(alarm="string", by="string", device="string?",
                                     what="string", room="string", user="string?",
                                     first="string?", after_seconds="number")),
    FIRE_RESET: EventSpec("warning", "A person reset fire mode: escape doors lock again.",
                          fields(user="string", note="string?", source="string")),
    DRILL: EventSpec("warning", "A fire drill (test mode, docs/alarms.md): `phase` started, then "
                     "alarm, confirmed and reset (each step's `actions`: what moved, or with "
                     "actuate false what would have), then finished (or aborted: a real fire "
                     "began). Every message of a drill carries data.drill = true.",
                     fields(phase="string", user="string", source="string", note="string?",
                            actuate="boolean", by="string?", device="string?",
                            actions="{}[]", moved="integer", failed="integer",
                            reason="string?")),
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
