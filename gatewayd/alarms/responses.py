"""What people do about alarms, from the platform or the local control socket: acknowledge
one, reset a latched one whose condition is over, end fire mode.

Each is recorded in the audit log under the person's name and told as a gateway event
(``gateway.alarm_acked``, ``gateway.alarm_reset``; ``gateway.fire_reset`` too when fire mode
ends, which relocks the escape doors through the rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gatewayd import events
from gatewayd.alarms.catalogue import FIRE_MODE
from gatewayd.model import Alarm, Event, Severity

if TYPE_CHECKING:
    from gatewayd.alarms.keeper import AlarmKeeper
    from gatewayd.audit import AuditLog


class Responses:
    """``permit_reset(alarm)`` -> why the rules refuse its reset, or None; ``emit(event)``
    sends an event through the rules and out."""

    def __init__(
        self,
        gateway_id: str,
        keeper: AlarmKeeper,
        audit: AuditLog,
        permit_reset: Callable[[Alarm], str | None],
        emit: Callable[[Event], None],
    ) -> None:
        self.gateway_id = gateway_id
        self.keeper = keeper
        self.audit = audit
        self.permit_reset = permit_reset
        self.emit = emit

    def ack(
        self, alarm_id: str, user: str, note: str | None = None, source: str = "platform"
    ) -> Alarm:
        """Acknowledge an alarm; raises ``Refusal`` (code ``invalid``) for an unknown id."""
        alarm = self.keeper.ack(alarm_id, user, note)
        self._tell(events.ALARM_ACKED, "info", alarm, user, note, source)
        return alarm

    def reset(
        self, alarm_id: str, user: str, note: str | None = None, source: str = "platform"
    ) -> Alarm:
        """Reset a latched alarm whose condition is over; raises ``Refusal`` saying why not
        (still active, not latched, unknown). Resetting fire mode relocks the escape doors."""
        alarm = self.keeper.reset(alarm_id, user, self.permit_reset, note)
        self._tell(events.ALARM_RESET, "warning", alarm, user, note, source)
        if alarm.type == FIRE_MODE:
            data = {"user": user, "note": note, "source": source}
            self.emit(Event(self.gateway_id, events.FIRE_RESET, "warning", data))
        return alarm

    def fire_reset(self, user: str, note: str | None = None, source: str = "platform") -> bool:
        """End fire mode (a person has seen to the fire). False when not in fire mode;
        raises ``Refusal`` while a detector or pile still reports smoke or heat."""
        book = self.keeper.book
        if not book.fire_mode:
            return False
        self.reset(book.fire_id, user, note, source)
        return True

    def _tell(
        self, type_: str, severity: Severity, alarm: Alarm, user: str, note: str | None, source: str
    ) -> None:
        self.audit.alarm(type_.rsplit("_", 1)[-1], alarm.id, user, source, note)  # acked, reset
        data = {"alarm": alarm.id, "type": alarm.type, "user": user, "note": note, "source": source}
        self.emit(Event(self.gateway_id, type_, severity, data))
