"""The landlord's API: houses, doors, tenants and visitor passes, grants, the unlock log and
the audit trail. Every change is audited and visible at once on every process."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatewayd_relay import access, audit, auth, views
from gatewayd_relay.access import GrantSpec
from gatewayd_relay.auth import AuthError, Principal
from gatewayd_relay.deps import RelayDep, StaffDep, own_origin
from gatewayd_relay.models import AccessEvent, Door, Grant, House, Person

router = APIRouter(prefix="/api", tags=["landlord"])


def house_for(s: Session, who: Principal, house_id: int, manage: bool = False) -> House:
    house = s.get(House, house_id)
    assert who.account is not None
    ok = house is not None and (
        auth.may_manage(who.account, house) if manage else auth.may_see(who.account, house)
    )
    if not ok:
        raise AuthError(404, "forbidden_page")
    assert house is not None
    return house


def person_view(s: Session, person: Person) -> dict[str, Any]:
    return views.person(person, list(s.scalars(select(Grant).where(Grant.person_id == person.id))))


def invite_url(request: Request, base: str, token: str) -> str:
    return f"{(base or own_origin(request)).rstrip('/')}/i/{token}"


class GrantIn(BaseModel):
    door: int
    valid_from: float | None = Field(None, description="Unix seconds; default now (move-in)")
    valid_until: float | None = Field(None, description="Unix seconds (move-out); none: open-ended")
    hours: str = Field(
        "", description='Daily window "HH:MM-HH:MM" in the relay\'s time zone; "" any time'
    )
    max_opens: int | None = None


class TenantIn(BaseModel):
    name: str = Field(max_length=128)
    handle: str = Field(
        "", max_length=64, description="The `user` the gateway logs; default tenant-<id>"
    )
    grants: list[GrantIn] = []


class PassIn(BaseModel):
    name: str = Field(max_length=128)
    door: int
    hours_valid: float = Field(
        4.0, gt=0, le=72, description="The pass ends this many hours from now"
    )
    max_opens: int | None = Field(5, ge=1, le=100)


class DoorIn(BaseModel):
    device: str = Field(max_length=128)
    name: str = Field("", max_length=128)


class PersonOut(BaseModel):
    person: dict[str, Any]
    invite_url: str


def _spec(g: GrantIn) -> GrantSpec:
    return GrantSpec(
        g.door,
        g.valid_from if g.valid_from is not None else time.time(),
        g.valid_until,
        g.hours,
        g.max_opens,
    )


@router.get("/houses")
def list_houses(who: StaffDep, relay: RelayDep) -> list[dict[str, Any]]:
    assert who.account is not None
    with relay.db.session() as s:
        return [views.house(h) for h in auth.houses_of(s, who.account)]


@router.get("/houses/{house_id}")
def house_detail(house_id: int, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    """The house, its doors (live state), its people and their grants."""
    with relay.db.session() as s:
        house = house_for(s, who, house_id)
        doors = s.scalars(select(Door).where(Door.house_id == house.id).order_by(Door.id))
        return {
            **views.house(house),
            "doors": [views.door(d) for d in doors],
            "people": [views.person(p, gs) for p, gs in access.people_of(s, house)],
        }


@router.post("/houses/{house_id}/doors")
def set_door(house_id: int, body: DoorIn, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    with relay.db.session() as s:
        house = house_for(s, who, house_id, manage=True)
        return views.door(access.add_door(s, who.label, house, body.device, body.name))


@router.post("/houses/{house_id}/tenants", response_model=PersonOut)
def add_tenant(
    house_id: int, body: TenantIn, who: StaffDep, relay: RelayDep, request: Request
) -> PersonOut:
    """A tenant with their doors from move-in to move-out; the answer's invite link binds
    their phone (show it as a QR code)."""
    with relay.db.session() as s:
        house = house_for(s, who, house_id, manage=True)
        person, token = access.add_person(
            s, who.label, house, body.name, body.handle, "tenant", [_spec(g) for g in body.grants]
        )
        view = person_view(s, person)
    return PersonOut(person=view, invite_url=invite_url(request, relay.settings.public_url, token))


@router.post("/houses/{house_id}/passes", response_model=PersonOut)
def add_pass(
    house_id: int, body: PassIn, who: StaffDep, relay: RelayDep, request: Request
) -> PersonOut:
    """A visitor pass: one door, a few hours, a limited number of opens."""
    now = time.time()
    spec = GrantSpec(body.door, now, now + body.hours_valid * 3600, "", body.max_opens)
    with relay.db.session() as s:
        house = house_for(s, who, house_id, manage=True)
        person, token = access.add_person(s, who.label, house, body.name, "", "visitor", [spec])
        view = person_view(s, person)
    return PersonOut(person=view, invite_url=invite_url(request, relay.settings.public_url, token))


def _person(s: Session, who: Principal, person_id: int) -> tuple[House, Person]:
    person = s.get(Person, person_id)
    if person is None:
        raise AuthError(404, "forbidden_page")
    return house_for(s, who, person.house_id, manage=True), person


@router.post("/people/{person_id}/grants")
def add_grant(person_id: int, body: GrantIn, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    with relay.db.session() as s:
        house, person = _person(s, who, person_id)
        return views.grant(access.add_grant(s, who.label, house, person, _spec(body)))


@router.post("/people/{person_id}/revoke")
def revoke_person(person_id: int, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    """Out at once: the person's next tap is refused (and logged), on every process."""
    with relay.db.session() as s:
        house, person = _person(s, who, person_id)
        access.revoke_person(s, who.label, house, person)
        out = person_view(s, person)
    relay.changed(house.id, "person", person_id)
    return out


@router.post("/people/{person_id}/invite", response_model=PersonOut)
def reinvite(person_id: int, who: StaffDep, relay: RelayDep, request: Request) -> PersonOut:
    """A new invite link (a new phone); phones already bound stay bound."""
    with relay.db.session() as s:
        house, person = _person(s, who, person_id)
        token = access.new_invite(s, who.label, house, person)
        view = person_view(s, person)
    return PersonOut(person=view, invite_url=invite_url(request, relay.settings.public_url, token))


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(grant_id: int, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    with relay.db.session() as s:
        grant = s.get(Grant, grant_id)
        if grant is None:
            raise AuthError(404, "forbidden_page")
        house, _person_row = _person(s, who, grant.person_id)
        access.revoke_grant(s, who.label, house, grant)
        return views.grant(grant)


@router.get("/houses/{house_id}/log")
def unlock_log(
    house_id: int, who: StaffDep, relay: RelayDep, limit: int = 100
) -> list[dict[str, Any]]:
    """Who opened which door and how (phone, card, PIN, exit button…), newest first; taps
    the relay refused appear as `relay.refused` with the reason."""
    with relay.db.session() as s:
        house = house_for(s, who, house_id)
        rows = s.scalars(
            select(AccessEvent)
            .where(AccessEvent.house_id == house.id)
            .order_by(AccessEvent.ts.desc())
            .limit(min(limit, 1000))
        )
        return [views.access(r) for r in rows]


@router.get("/houses/{house_id}/audit")
def audit_trail(house_id: int, who: StaffDep, relay: RelayDep) -> list[dict[str, Any]]:
    with relay.db.session() as s:
        house = house_for(s, who, house_id, manage=True)
        return audit.entries(s, house.id)
