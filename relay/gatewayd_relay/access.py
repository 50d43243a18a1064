"""People and their grants, as a landlord manages them: tenants and visitor passes, doors,
invite links that bind a phone, revocation. Every change is audited in its own transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gatewayd_relay import audit
from gatewayd_relay.auth import create_session
from gatewayd_relay.grants import HANDLE, parse_hours
from gatewayd_relay.models import Door, Grant, House, Invite, Person, WebSession
from gatewayd_relay.passwords import new_token, token_hash

INVITE_DAYS = 7.0


class AccessError(ValueError):
    pass


@dataclass(frozen=True)
class GrantSpec:
    door_id: int
    valid_from: float
    valid_until: float | None = None
    hours: str = ""
    max_opens: int | None = None


def add_door(s: Session, actor: str, house: House, device: str, name: str) -> Door:
    if not HANDLE.match(device):
        raise AccessError("device id: as in gateway.toml")
    door = s.scalar(select(Door).where(Door.house_id == house.id, Door.device == device))
    if door is None:
        door = Door(house_id=house.id, device=device, name=name, state={})
        s.add(door)
    else:
        door.name = name
    s.flush()
    audit.record(s, actor, "door.set", house.id, device=device, name=name)
    return door


def _check_grant(s: Session, house: House, spec: GrantSpec) -> None:
    door = s.get(Door, spec.door_id)
    if door is None or door.house_id != house.id:
        raise AccessError(f"door {spec.door_id} is not a door of this house")
    if spec.valid_until is not None and spec.valid_until <= spec.valid_from:
        raise AccessError("the grant ends before it starts")
    if spec.max_opens is not None and spec.max_opens < 1:
        raise AccessError("max opens: at least 1")
    try:
        parse_hours(spec.hours)
    except ValueError as exc:
        raise AccessError(str(exc)) from None


def add_person(
    s: Session, actor: str, house: House, name: str, handle: str, kind: str, grants: list[GrantSpec]
) -> tuple[Person, str]:
    """A tenant or visitor with their grants, and the invite token that binds their phone."""
    if kind not in ("tenant", "visitor"):
        raise AccessError("kind: tenant or visitor")
    if not name.strip():
        raise AccessError("a name is needed")
    now = time.time()
    person = Person(
        house_id=house.id, name=name.strip(), handle="", kind=kind, created=now, created_by=actor
    )
    s.add(person)
    s.flush()
    if handle:
        if not HANDLE.match(handle):
            raise AccessError("handle: letters, digits and . _ : @ - only")
        if s.scalar(select(Person).where(Person.house_id == house.id, Person.handle == handle)):
            raise AccessError(f"handle {handle} is taken in this house")
        person.handle = handle
    else:
        person.handle = f"{kind}-{person.id}"
    audit.record(
        s, actor, f"{kind}.add", house.id, person=person.id, name=person.name, handle=person.handle
    )
    for spec in grants:
        add_grant(s, actor, house, person, spec)
    return person, new_invite(s, actor, house, person)


def add_grant(s: Session, actor: str, house: House, person: Person, spec: GrantSpec) -> Grant:
    _check_grant(s, house, spec)
    if person.revoked_at is not None:
        raise AccessError("this person's access was revoked; add them again")
    g = Grant(
        person_id=person.id,
        door_id=spec.door_id,
        valid_from=spec.valid_from,
        valid_until=spec.valid_until,
        hours=spec.hours,
        max_opens=spec.max_opens,
        opens=0,
        created=time.time(),
        created_by=actor,
    )
    s.add(g)
    s.flush()
    audit.record(
        s,
        actor,
        "grant.add",
        house.id,
        grant=g.id,
        person=person.id,
        door=spec.door_id,
        valid_from=spec.valid_from,
        valid_until=spec.valid_until,
        hours=spec.hours,
        max_opens=spec.max_opens,
    )
    return g


def revoke_grant(s: Session, actor: str, house: House, grant: Grant) -> None:
    if grant.revoked_at is None:
        grant.revoked_at = time.time()
        audit.record(s, actor, "grant.revoke", house.id, grant=grant.id, person=grant.person_id)


def revoke_person(s: Session, actor: str, house: House, person: Person) -> None:
    """Out at once: every grant, every bound phone, every unused invite."""
    now = time.time()
    if person.revoked_at is None:
        person.revoked_at = now
    s.execute(
        update(Grant)
        .where(Grant.person_id == person.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    s.execute(
        update(WebSession)
        .where(WebSession.person_id == person.id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    s.execute(
        update(Invite)
        .where(Invite.person_id == person.id, Invite.used_at.is_(None))
        .values(used_at=now)
    )
    audit.record(s, actor, f"{person.kind}.revoke", house.id, person=person.id, name=person.name)


def new_invite(s: Session, actor: str, house: House, person: Person) -> str:
    token = new_token()
    s.add(
        Invite(
            person_id=person.id,
            token_hash=token_hash(token),
            expires=time.time() + INVITE_DAYS * 86400,
        )
    )
    audit.record(s, actor, "invite.create", house.id, person=person.id)
    return token


def invite_person(s: Session, token: str) -> Person | None:
    inv = s.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))
    if inv is None or inv.used_at is not None or inv.expires < time.time():
        return None
    person = s.get(Person, inv.person_id)
    return None if person is None or person.revoked_at is not None else person


def accept_invite(s: Session, token: str, session_days: float) -> tuple[Person, str, str] | None:
    """Bind the phone presenting ``token``: (person, session token, csrf), or None."""
    inv = s.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))
    person = invite_person(s, token)
    if inv is None or person is None:
        return None
    inv.used_at = time.time()
    session_token, csrf = create_session(s, session_days * 86400, person_id=person.id)
    audit.record(
        s, f"{person.kind}:{person.handle}", "phone.bind", person.house_id, person=person.id
    )
    return person, session_token, csrf


def people_of(s: Session, house: House) -> list[tuple[Person, list[Grant]]]:
    people = s.scalars(
        select(Person)
        .where(Person.house_id == house.id)
        .order_by(Person.revoked_at.is_not(None), Person.id)
    )
    out = []
    for p in people:
        grants = list(s.scalars(select(Grant).where(Grant.person_id == p.id).order_by(Grant.id)))
        out.append((p, grants))
    return out
