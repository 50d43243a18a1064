"""The relay's side of an alarm's life: the one owner of incidents.

The gateway owns the alarm (active/cleared, its own acknowledgement); the relay owns what
people did about it: who was told and when, who said "I'm on it", who was told next because
nobody did, and who closed it with what note. Every function is one step inside the caller's
transaction and returns what the caller must push; none does I/O beyond the database.

Across processes each step happens once: an incident is created by exactly one process (a
unique index over the open incidents of a gateway alarm id), and an escalation is claimed by
the one process whose guarded UPDATE moved the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gatewayd_relay.db import rows_changed
from gatewayd_relay.models import Account, House, Incident, IncidentEntry

#: When a gateway's alarm entry has no severity, it is pushed: missing a fire costs more
#: than one message too many.
DEFAULT_SEVERITY = "critical"


@dataclass(frozen=True)
class Push:
    """Tell these people about this incident (level 0: at once; n: the n-th escalation)."""

    incident: Incident
    house: House
    accounts: list[Account]
    level: int


def _open(s: Session, house_id: int, alarm_id: str) -> Incident | None:
    return s.scalar(
        select(Incident).where(
            Incident.house_id == house_id,
            Incident.alarm_id == alarm_id,
            Incident.closed_at.is_(None),
        )
    )


def raise_alarm(
    s: Session,
    house: House,
    entry: dict[str, Any],
    now: float,
    escalate_after: float,
) -> tuple[Incident, Push | None]:
    """The open incident for a gateway alarm (created if there is none) and, when this call
    created it and it is critical, the first push."""
    alarm_id = str(entry["id"])
    severity = str(entry.get("severity") or DEFAULT_SEVERITY)
    existing = _open(s, house.id, alarm_id)
    if existing is not None:
        if existing.state != "active":
            existing.state = "active"
            existing.raised_count += 1
            existing.cleared_at = None
        return existing, None
    critical = severity == "critical"
    inc = Incident(
        house_id=house.id,
        alarm_id=alarm_id,
        device=str(entry.get("device") or ""),
        type=str(entry.get("type") or alarm_id.rpartition("/")[2]),
        severity=severity,
        since=float(entry.get("since") or entry.get("ts") or now),
        state="active",
        data=entry.get("data") if isinstance(entry.get("data"), dict) else {},
        next_escalation=now + escalate_after if critical else None,
        created=now,
    )
    try:
        with s.begin_nested():
            s.add(inc)
            s.flush()
    except IntegrityError:
        # Another process created it between our look and our insert: it pushes, not us.
        found = _open(s, house.id, alarm_id)
        assert found is not None
        return found, None
    if not critical:
        return inc, None
    people = first_responders(s, house)
    return inc, Push(inc, house, people, 0)


def from_alarms(
    s: Session, house: House, active: list[dict[str, Any]], now: float, escalate_after: float
) -> tuple[list[Incident], list[Push]]:
    """Apply a gateway's whole `alarms` list: raise what is active, mark cleared what left
    it (or says ``state: cleared``), take the gateway's own acknowledgement into account."""
    changed: list[Incident] = []
    pushes: list[Push] = []
    present: set[str] = set()
    for entry in active:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry.get("state") == "cleared":
            continue
        inc, push = raise_alarm(s, house, entry, now, escalate_after)
        present.add(inc.alarm_id)
        acked_by = entry.get("acked_by")
        if acked_by and inc.acked_at is None:
            # Acknowledged at the gateway (by another platform, or on site): nobody needs
            # to be woken any further.
            inc.acked_at = now
            inc.acked_by = str(acked_by)
            inc.next_escalation = None
            s.add(IncidentEntry(incident_id=inc.id, ts=now, kind="gateway_ack", who=str(acked_by)))
        changed.append(inc)
        if push is not None:
            pushes.append(push)
    for inc in s.scalars(
        select(Incident).where(
            Incident.house_id == house.id,
            Incident.closed_at.is_(None),
            Incident.state == "active",
        )
    ):
        if inc.alarm_id not in present:
            inc.state = "cleared"
            inc.cleared_at = now
            changed.append(inc)
    return changed, pushes


def first_responders(s: Session, house: House) -> list[Account]:
    """Told at once: the landlord and the village's grid workers."""
    q = select(Account).where(
        Account.disabled.is_(False),
        or_(
            Account.id == house.landlord_id,
            (Account.role == "grid")
            & (Account.village == house.village)
            & (Account.village != "")
            & Account.escalation_rank.is_(None),
        ),
    )
    return list(s.scalars(q.order_by(Account.id)))


def chain(s: Session, house: House, level: int) -> list[Account]:
    """The level-th link of the village's escalation chain (a township account with no
    village serves every village)."""
    q = select(Account).where(
        Account.disabled.is_(False),
        Account.escalation_rank == level,
        or_(Account.village == house.village, Account.village == ""),
    )
    return list(s.scalars(q.order_by(Account.id)))


def escalate_due(s: Session, now: float, escalate_after: float) -> list[Push]:
    """Claim and return every escalation that is due. The UPDATE moves the level only if no
    other process did so first, so each escalation is pushed exactly once."""
    due = s.execute(
        select(Incident.id, Incident.level).where(
            Incident.next_escalation.is_not(None),
            Incident.next_escalation <= now,
            Incident.acked_at.is_(None),
            Incident.closed_at.is_(None),
        )
    ).all()
    pushes = []
    for inc_id, level in due:
        claimed = rows_changed(
            s,
            update(Incident)
            .where(Incident.id == inc_id, Incident.level == level, Incident.acked_at.is_(None))
            .values(level=level + 1, next_escalation=now + escalate_after),
        )
        if claimed != 1:
            continue
        inc = s.get(Incident, inc_id)
        assert inc is not None
        s.refresh(inc)
        house = s.get(House, inc.house_id)
        assert house is not None
        people = chain(s, house, level + 1)
        if not people:
            inc.next_escalation = None  # the chain has ended; the pages still show it
            s.add(IncidentEntry(incident_id=inc_id, ts=now, kind="chain_end", level=level + 1))
            continue
        s.add(IncidentEntry(incident_id=inc_id, ts=now, kind="escalated", level=level + 1))
        pushes.append(Push(inc, house, people, level + 1))
    return pushes


def acknowledge(s: Session, inc: Incident, who: Account, now: float, note: str = "") -> bool:
    """Record "I'm on it". The first acknowledgement stops the escalation; every one is
    recorded. True when this was the first."""
    s.add(IncidentEntry(incident_id=inc.id, ts=now, kind="ack", who=who.username, note=note))
    if inc.acked_at is not None:
        return False
    inc.acked_at = now
    inc.acked_by = who.username
    inc.next_escalation = None
    return True


def close(s: Session, inc: Incident, who: Account, note: str, now: float) -> None:
    """销号: who, when, and what was done. Closing also acknowledges."""
    if inc.acked_at is None:
        acknowledge(s, inc, who, now)
    inc.closed_at = now
    inc.closed_by = who.username
    inc.close_note = note
    inc.next_escalation = None
    s.add(IncidentEntry(incident_id=inc.id, ts=now, kind="closed", who=who.username, note=note))


def note(
    s: Session, inc_id: int, kind: str, who: str, now: float, level: int = 0, text: str = ""
) -> None:
    s.add(IncidentEntry(incident_id=inc_id, ts=now, kind=kind, who=who, level=level, note=text))


def entries(s: Session, inc_id: int) -> list[IncidentEntry]:
    return list(
        s.scalars(
            select(IncidentEntry)
            .where(IncidentEntry.incident_id == inc_id)
            .order_by(IncidentEntry.id)
        )
    )


def visible(s: Session, house_ids: list[int], include_closed: int = 20) -> list[Incident]:
    """Open incidents first (newest first), then the most recently closed few."""
    if not house_ids:
        return []
    opened = s.scalars(
        select(Incident)
        .where(Incident.house_id.in_(house_ids), Incident.closed_at.is_(None))
        .order_by(Incident.created.desc())
    ).all()
    closed = s.scalars(
        select(Incident)
        .where(Incident.house_id.in_(house_ids), Incident.closed_at.is_not(None))
        .order_by(Incident.closed_at.desc())
        .limit(include_closed)
    ).all()
    return [*opened, *closed]
