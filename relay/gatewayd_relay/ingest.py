"""What the gateways publish, into the database: door state, the unlock log, incidents,
gateway status, command results. Runs in a worker thread, one message at a time per process.

Every process ingests every message (each must feed its own live pages), so each write is
idempotent: the unlock log is unique per event id, a result fills a command only once, an
incident is created by one process only. What to show is returned whether this process won
the write or another did. A batch is one transaction: one the database could not take left
nothing behind and is tried again as a whole.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from gatewayd_relay import incidents, views
from gatewayd_relay.models import AccessEvent, Command, Door, House, Person

log = logging.getLogger("gatewayd_relay.ingest")

#: Errors that say the database is away or busy (locked, connection lost, no connection
#: free), whatever the message: a batch that meets one is tried again, never dropped.
DB_AWAY = (OperationalError, InterfaceError, PoolTimeout)


@dataclass
class Outcome:
    #: (house id, kind, body) for the live pages of this process.
    updates: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    pushes: list[incidents.Push] = field(default_factory=list)


def handle_batch(
    s: Session, items: list[tuple[str, str, dict[str, Any]]], escalate_after: float
) -> Outcome:
    """Every (gateway id, topic rest, body) in order, each in its own savepoint: one message
    that cannot be ingested is logged and skipped, never the batch."""
    out = Outcome()
    houses: dict[str, House | None] = {}
    for gateway_id, rest, body in items:
        if gateway_id not in houses:
            houses[gateway_id] = s.scalar(select(House).where(House.gateway_id == gateway_id))
        house = houses[gateway_id]
        if house is None:
            continue
        try:
            with s.begin_nested():
                handle(s, house, rest, body, escalate_after, out)
        except DB_AWAY:
            raise  # the database's fault, not the message's: the batch is tried again
        except Exception:
            log.exception("could not ingest a message on %s/%s", gateway_id, rest)
    return out


def handle(
    s: Session, house: House, rest: str, body: dict[str, Any], escalate_after: float, out: Outcome
) -> None:
    now = time.time()
    if rest == "cmd/result":
        _result(s, body, now)
    elif rest == "status":
        house.online = body.get("online") is True
        house.fire_mode = body.get("fire_mode") is True
        house.status_at = now
        out.updates.append((house.id, "house", views.house(house)))
    elif rest == "alarms":
        active = body.get("active")
        changed, pushes = incidents.from_alarms(
            s, house, active if isinstance(active, list) else [], now, escalate_after
        )
        out.updates += [(house.id, "incident", views.incident(i, house)) for i in changed]
        out.pushes += pushes
    elif rest.startswith("state/"):
        door = _door_state(s, house, rest[6:], body, now)
        if door is not None:
            out.updates.append((house.id, "door", views.door(door)))
    elif rest.startswith("events/"):
        _event(s, house, body, now, escalate_after, out)


def _result(s: Session, body: dict[str, Any], now: float) -> None:
    cid = body.get("id")
    if not isinstance(cid, str):
        return
    s.execute(
        update(Command)
        .where(Command.id == cid, Command.code.is_(None))
        .values(
            code=str(body.get("code", "")),
            detail=str(body.get("detail", ""))[:500],
            answered_at=now,
        )
    )


def _door_state(
    s: Session, house: House, device: str, body: dict[str, Any], now: float
) -> Door | None:
    if "lock" not in body:  # not a door lock's state
        return None
    door = s.scalar(select(Door).where(Door.house_id == house.id, Door.device == device))
    if door is None:
        door = Door(house_id=house.id, device=device, name="", state={}, updated=now)
        try:
            with s.begin_nested():
                s.add(door)
                s.flush()
        except IntegrityError:
            door = s.scalar(select(Door).where(Door.house_id == house.id, Door.device == device))
            assert door is not None
    state = {k: body.get(k) for k in ("lock", "door", "connected", "battery_pct", "mains")}
    if state == door.state:
        return None  # e.g. only the signal strength moved: nothing a person sees
    door.state = state
    door.updated = now
    return door


def person_name(s: Session, house_id: int, user: str) -> str:
    if not user:
        return ""
    p = s.scalar(select(Person).where(Person.house_id == house_id, Person.handle == user))
    return p.name if p is not None else ""


def log_access(s: Session, row: AccessEvent) -> AccessEvent:
    """Insert into the unlock log once; the stored row either way."""
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
        return row
    except IntegrityError:
        found = s.scalar(
            select(AccessEvent).where(
                AccessEvent.house_id == row.house_id, AccessEvent.event_id == row.event_id
            )
        )
        assert found is not None
        return found


def _event(
    s: Session,
    house: House,
    body: dict[str, Any],
    now: float,
    escalate_after: float,
    out: Outcome,
) -> None:
    etype, device, eid = body.get("type"), body.get("device"), body.get("id")
    if not (isinstance(etype, str) and isinstance(device, str) and isinstance(eid, str)):
        return
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    if etype.startswith("door."):
        user = data.get("user")
        user_s = "" if user is None else str(user)
        row = log_access(
            s,
            AccessEvent(
                house_id=house.id,
                event_id=eid[:160],
                ts=float(body.get("ts") or now),
                device=device,
                type=etype,
                method=str(data.get("method") or ""),
                user=user_s,
                name=person_name(s, house.id, user_s),
                detail={k: v for k, v in data.items() if k not in ("method", "user")},
            ),
        )
        out.updates.append((house.id, "access", views.access(row)))
    if body.get("severity") == "critical":
        entry = {
            "id": f"{device}/{etype}",
            "device": device,
            "type": etype,
            "severity": "critical",
            "since": body.get("ts") or now,
            "data": data,
        }
        inc, push = incidents.raise_alarm(s, house, entry, now, escalate_after)
        out.updates.append((house.id, "incident", views.incident(inc, house)))
        if push is not None:
            out.pushes.append(push)
