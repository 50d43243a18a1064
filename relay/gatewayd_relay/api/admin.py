"""The township admin's API: accounts, houses and their enrollment codes; and the one
endpoint a gateway calls itself (`gatewayd register`), authorised by its one-time code."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from gatewayd_relay import views
from gatewayd_relay.deps import AdminDep, RelayDep
from gatewayd_relay.models import House
from gatewayd_relay.provisioning import (
    ProvisioningError,
    create_account,
    create_house,
    enroll,
    new_enrollment,
)

router = APIRouter(prefix="/api", tags=["admin"])


class AccountIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: str = Field(description="admin, landlord or grid")
    name: str = ""
    village: str = ""
    phone: str = ""
    escalation_rank: int | None = Field(None, ge=1, le=9)


class HouseIn(BaseModel):
    gateway_id: str = Field(max_length=128)
    name: str = Field(max_length=200)
    village: str = ""
    landlord: str | None = Field(None, description="A landlord account's username")


class EnrollmentOut(BaseModel):
    house: dict[str, Any]
    #: One-time, valid 24 h: `gatewayd register --relay URL --code CODE` on the gateway.
    code: str


class EnrollIn(BaseModel):
    code: str = Field(max_length=32)
    gateway_id: str = Field(max_length=128)
    key: str = Field(min_length=64, max_length=64, description="The command key, 64 hex digits")


class EnrolledOut(BaseModel):
    house: str
    gateway_id: str
    fingerprint: str
    rotated: bool


def _bad(exc: ProvisioningError) -> HTTPException:
    return HTTPException(400, str(exc))


@router.post("/accounts")
def add_account(body: AccountIn, who: AdminDep, relay: RelayDep) -> dict[str, Any]:
    try:
        with relay.db.session() as s:
            a = create_account(
                s,
                who.label,
                body.username,
                body.password,
                body.role,
                body.name,
                body.village,
                body.phone,
                body.escalation_rank,
            )
            return {"id": a.id, "username": a.username, "role": a.role, "village": a.village}
    except ProvisioningError as exc:
        raise _bad(exc) from None


@router.post("/houses", response_model=EnrollmentOut)
def add_house(body: HouseIn, who: AdminDep, relay: RelayDep) -> EnrollmentOut:
    """A house and its gateway's first one-time enrollment code."""
    try:
        with relay.db.session() as s:
            house, code = create_house(
                s, who.label, body.gateway_id, body.name, body.village, body.landlord
            )
            return EnrollmentOut(house=views.house(house), code=code)
    except ProvisioningError as exc:
        raise _bad(exc) from None


@router.post("/houses/{house_id}/enrollment", response_model=EnrollmentOut)
def enrollment(house_id: int, who: AdminDep, relay: RelayDep) -> EnrollmentOut:
    """A fresh code for the house: how a gateway's key is rotated (`gatewayd keygen --force`
    then `gatewayd register` with this code). Older unused codes stop working."""
    with relay.db.session() as s:
        house = s.get(House, house_id)
        if house is None:
            raise HTTPException(404, "no such house")
        return EnrollmentOut(house=views.house(house), code=new_enrollment(s, who.label, house))


@router.post("/enroll", response_model=EnrolledOut, tags=["gateway"])
def gateway_enroll(body: EnrollIn, relay: RelayDep) -> EnrolledOut:
    """Called by `gatewayd register` over TLS: stores the gateway's command key (sealed with
    the relay's master key) under a valid one-time code."""
    try:
        with relay.db.session() as s:
            house, rotated = enroll(s, relay.keys, body.code, body.gateway_id, body.key)
            return EnrolledOut(
                house=house.name,
                gateway_id=house.gateway_id,
                fingerprint=house.key_fingerprint,
                rotated=rotated,
            )
    except ProvisioningError as exc:
        raise HTTPException(403, str(exc)) from None
