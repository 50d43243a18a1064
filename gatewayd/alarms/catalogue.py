"""Every alarm type the gateway can raise, declared once: severity, and how it leaves the list.

An alarm type *clears by condition* (it leaves the list when what caused it is over: a detector
heard again, a receiver answering) or is *latched* (a safety trip: it stays, marked cleared,
until the condition is over **and** a person resets it). Rules declare the types they raise
(``Rule.alarm_types``); the gateway's own are here. The lifecycle itself is ``book``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gatewayd.model import Severity

log = logging.getLogger("gatewayd.alarms")


@dataclass(frozen=True)
class AlarmSpec:
    type: str
    severity: Severity
    latched: bool
    #: How the alarm leaves the list, in words for docs/alarms.md and operators.
    clears: str
    #: What the person on call does.
    action: str
    #: What a part of this alarm is ("port", "detector", "bus"), for messages.
    part: str = "part"


# The gateway's own alarm types (fire mode belongs to the lifecycle's owner: ``book``).
FIRE_MODE = "gateway.fire_mode"
STATE_LOST = "gateway.state_lost"
STORAGE_FAILED = "gateway.storage_failed"
OUTBOX_FULL = "gateway.outbox_full"

CORE: tuple[AlarmSpec, ...] = (
    AlarmSpec(
        FIRE_MODE,
        "critical",
        latched=True,
        clears="reset (fire_reset) once no detector or pile reports smoke or heat any more",
        action="Dispatch; if someone on site sees the fire is real, confirm it (fire_confirm: "
        "the escape doors open). Once the house is safe and every detector is clear, reset fire "
        "mode: "
        "doors relock, chargers stay off until turned on one by one.",
        part="detector",
    ),
    AlarmSpec(
        STATE_LOST,
        "critical",
        latched=True,
        clears="reset by a person (there is nothing to wait for)",
        action="The SD card lost the gateway's memory (alarms, fire mode). Every charger port "
        "was switched off. Check the house and the alarms, then reset; plan a new SD card.",
    ),
    AlarmSpec(
        STORAGE_FAILED,
        "critical",
        latched=False,
        clears="by itself, once every store writes again",
        action="The SD card is read-only or full: rules still run from memory, but remote "
        "commands are refused (storage_failed) and a power cut would lose state. Replace the "
        "SD card.",
        part="store",
    ),
    AlarmSpec(
        OUTBOX_FULL,
        "warning",
        latched=False,
        clears="by itself, once the backlog is under 80 % of the outbox budget",
        action="The broker has been unreachable for long, or the SD card is failing; the "
        "oldest info events are being dropped. Restore the uplink.",
    ),
)


class Catalogue:
    """Alarm types by name. An undeclared type (a third-party rule's bug) is kept as a
    non-latched warning and logged once, never dropped: an alarm must not vanish."""

    def __init__(
        self,
        specs: Iterable[AlarmSpec] = (),
        later: Callable[[], Iterable[AlarmSpec]] | None = None,
    ) -> None:
        """``later``: more declarations, read the first time a type is not found (the device
        families a house does not use, whose import start-up need not pay for)."""
        self.specs: dict[str, AlarmSpec] = {}
        self._warned: set[str] = set()
        self._later = later
        for spec in (*CORE, *specs):
            self.add(spec)

    def _complete(self) -> None:
        later, self._later = self._later, None
        if later is not None:
            for spec in later():
                self.add(spec)

    def add(self, spec: AlarmSpec) -> None:
        known = self.specs.get(spec.type)
        if known is not None and known != spec:
            log.error("alarm type %s declared twice, differently; keeping the first", spec.type)
            return
        self.specs[spec.type] = spec

    def __getitem__(self, type_: str) -> AlarmSpec:
        spec = self.specs.get(type_)
        if spec is None and self._later is not None:
            self._complete()
            spec = self.specs.get(type_)
        if spec is None:
            if type_ not in self._warned:
                self._warned.add(type_)
                log.error("alarm type %s is not declared by any rule; kept as a warning", type_)
            return AlarmSpec(type_, "warning", False, "by itself", "see the rule's docs")
        return spec

    def __contains__(self, type_: str) -> bool:
        if type_ not in self.specs:
            self._complete()
        return type_ in self.specs

    def all(self) -> Mapping[str, AlarmSpec]:
        self._complete()
        return dict(sorted(self.specs.items()))
