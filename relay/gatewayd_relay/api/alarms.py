"""Alarms as people handle them: the list for a landlord (their houses) or a grid worker
(their village), "I'm on it", closing with a note, and confirming a fire."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gatewayd_relay import auth, gateway_cmds, incidents, views
from gatewayd_relay.auth import AuthError, Principal
from gatewayd_relay.core import Relay
from gatewayd_relay.deps import RelayDep, StaffDep
from gatewayd_relay.models import Account, House, Incident

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


class NoteIn(BaseModel):
    note: str = Field("", max_length=2000)


class CommandOut(BaseModel):
    incident: dict[str, Any]
    #: The gateway's result code for the command this sent (None: no answer in time).
    gateway_code: str | None = None


def _incident(s: Session, who: Principal, inc_id: int) -> tuple[Incident, House, Account]:
    inc = s.get(Incident, inc_id)
    house = s.get(House, inc.house_id) if inc is not None else None
    assert who.account is not None
    if inc is None or house is None or not auth.may_see(who.account, house):
        raise AuthError(404, "forbidden_page")
    return inc, house, who.account


def _view(s: Session, inc: Incident, house: House) -> dict[str, Any]:
    return views.incident(inc, house, incidents.entries(s, inc.id))


@router.get("")
def list_alarms(who: StaffDep, relay: RelayDep) -> list[dict[str, Any]]:
    """Open incidents (newest first), then the last closed ones."""
    assert who.account is not None
    with relay.db.session() as s:
        houses = {h.id: h for h in auth.houses_of(s, who.account)}
        return [_view(s, i, houses[i.house_id]) for i in incidents.visible(s, list(houses))]


@router.get("/{inc_id}")
def alarm(inc_id: int, who: StaffDep, relay: RelayDep) -> dict[str, Any]:
    with relay.db.session() as s:
        inc, house, _ = _incident(s, who, inc_id)
        return _view(s, inc, house)


async def _tell_gateway(
    relay: Relay, house_id: int, inc_id: int, cmd: gateway_cmds.GatewayCommand, who: Account
) -> str | None:
    result = await relay.send_as(house_id, cmd, who)
    code = None if result is None else str(result.get("code"))
    await relay.db_call(
        incidents.note,
        inc_id,
        f"gateway.{cmd.action}",
        who.username,
        time.time(),
        0,
        code or "no answer",
    )
    relay.changed(house_id, "incident", inc_id)
    return code


@router.post("/{inc_id}/ack", response_model=CommandOut)
async def acknowledge(
    inc_id: int, who: StaffDep, relay: RelayDep, body: NoteIn | None = None
) -> CommandOut:
    """ "I'm on it": recorded with who and when; the first one stops the escalation. The
    gateway is also sent `ack_alarm` signed as this person (in the background)."""

    def work(s: Session) -> tuple[int, str, dict[str, Any]]:
        inc, house, acct = _incident(s, who, inc_id)
        incidents.acknowledge(s, inc, acct, time.time(), body.note if body else "")
        return house.id, inc.alarm_id, _view(s, inc, house)

    house_id, alarm_id, view = await relay.db_call(work)
    relay.changed(house_id, "incident", inc_id)
    if relay.settings.ack_to_gateway and who.account is not None:
        relay.background(
            _tell_gateway(relay, house_id, inc_id, gateway_cmds.ack_alarm(alarm_id), who.account)
        )
    return CommandOut(incident=view)


@router.post("/{inc_id}/close", response_model=CommandOut)
async def close(inc_id: int, body: NoteIn, who: StaffDep, relay: RelayDep) -> CommandOut:
    """销号: closed by this person, now, with what was done."""

    def work(s: Session) -> tuple[int, dict[str, Any]]:
        inc, house, acct = _incident(s, who, inc_id)
        if inc.closed_at is None:
            incidents.close(s, inc, acct, body.note, time.time())
        return house.id, _view(s, inc, house)

    house_id, view = await relay.db_call(work)
    relay.changed(house_id, "incident", inc_id)
    return CommandOut(incident=view)


@router.post("/{inc_id}/fire_confirm", response_model=CommandOut)
async def fire_confirm(inc_id: int, who: StaffDep, relay: RelayDep) -> CommandOut:
    """A person has seen the fire is real: the gateway is told (`fire_confirm`) and its
    answer shown."""

    def work(s: Session) -> tuple[int, str]:
        inc, house, acct = _incident(s, who, inc_id)
        incidents.note(s, inc.id, "fire_confirm", acct.username, time.time())
        return house.id, inc.alarm_id

    house_id, alarm_id = await relay.db_call(work)
    assert who.account is not None
    code = await _tell_gateway(
        relay, house_id, inc_id, gateway_cmds.fire_confirm(alarm_id), who.account
    )

    def view(s: Session) -> dict[str, Any]:
        inc, house, _ = _incident(s, who, inc_id)
        return _view(s, inc, house)

    return CommandOut(incident=await relay.db_call(view), gateway_code=code)
