"""The tenant's and visitor's API: my doors, open one."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from gatewayd_relay import tap
from gatewayd_relay.deps import LangDep, PhoneDep, RelayDep, words
from gatewayd_relay.models import Door, Grant

router = APIRouter(prefix="/api/phone", tags=["phone"])


class DoorOut(BaseModel):
    id: int
    name: str
    valid_until: float | None
    hours: str
    opens_left: int | None


class OpenOut(BaseModel):
    ok: bool
    #: "ok", the gateway's result code, "offline", or the relay's refusal
    #: (revoked, no_grant, not_yet, expired, outside_hours, used_up).
    code: str
    #: The outcome in words for the tenant, in their language.
    message: str
    command: str | None = None


def my_doors(relay: RelayDep, who: PhoneDep) -> list[DoorOut]:
    if who.revoked or who.person is None:
        return []
    now = time.time()
    with relay.db.session() as s:
        rows = s.execute(
            select(Door, Grant)
            .join(Grant, Grant.door_id == Door.id)
            .where(
                Grant.person_id == who.person.id,
                Grant.revoked_at.is_(None),
                (Grant.valid_until.is_(None)) | (Grant.valid_until > now),
            )
            .order_by(Door.id)
        ).all()
    seen: dict[int, DoorOut] = {}
    for door, g in rows:
        left = None if g.max_opens is None else max(0, g.max_opens - g.opens)
        seen[door.id] = DoorOut(
            id=door.id,
            name=door.name or door.device,
            valid_until=g.valid_until,
            hours=g.hours,
            opens_left=left,
        )
    return list(seen.values())


router.get("/doors", response_model=list[DoorOut])(my_doors)


@router.post("/doors/{door_id}/open", response_model=OpenOut)
async def open_door(
    door_id: int, request: Request, response: Response, relay: RelayDep, lang: LangDep
) -> OpenOut:
    """Check the grant, sign an `unlock` as this person, wait for the gateway (at most the
    action timeout) and say what happened. Needs a bound phone's session. The
    `Server-Timing` header says how long the relay took to publish the command."""
    r = await tap.open_door(relay, request, door_id)
    if r.relay_ms is not None:
        response.headers["Server-Timing"] = f"publish;dur={r.relay_ms}"
    return OpenOut(ok=r.ok, code=r.code, message=words(lang)(r.message), command=r.command)
