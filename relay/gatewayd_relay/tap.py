"""A tenant's tap: check the grant, sign as the tenant, publish, wait for the gateway, say
what happened in words. The check reads the database on every tap, so a revocation made on
any process takes effect on the next tap in every process; a refused tap never reaches the
gateway and is written to the house's unlock log, where the landlord sees it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gatewayd_relay import gateway_cmds, i18n
from gatewayd_relay.auth import Principal
from gatewayd_relay.core import Relay
from gatewayd_relay.db import rows_changed
from gatewayd_relay.grants import decide
from gatewayd_relay.ingest import log_access
from gatewayd_relay.models import AccessEvent, Door, Grant, House

UNLOCK_SECONDS = 5


@dataclass(frozen=True)
class TapResult:
    ok: bool
    #: "ok", a gateway result code, "offline", or a relay refusal ("revoked", "expired", …).
    code: str
    #: The i18n key of the words the tenant reads.
    message: str
    command: str | None = None


@dataclass(frozen=True)
class _Prepared:
    refused: str | None
    gateway_id: str = ""
    signed: dict[str, Any] | None = None
    grant_id: int | None = None
    counted: bool = False
    logged: tuple[int, int] | None = None  # (house id, access row id) of a refusal
    offline: bool = False


def _prepare(s: Session, relay: Relay, who: Principal, door_id: int, tz: ZoneInfo) -> _Prepared:
    door = s.get(Door, door_id)
    person = who.person
    if door is None or person is None or door.house_id != person.house_id:
        return _Prepared("no_grant")
    house = s.get(House, door.house_id)
    assert house is not None
    grant = s.scalar(
        select(Grant)
        .where(Grant.person_id == person.id, Grant.door_id == door.id)
        .order_by(Grant.revoked_at.is_not(None), Grant.id.desc())
    )
    now = time.time()
    decision = decide(None if who.revoked else person, grant, now, tz)
    if not decision.allowed:
        assert decision.refusal is not None
        row = log_access(
            s,
            AccessEvent(
                house_id=house.id,
                event_id="relay-" + secrets.token_hex(8),
                ts=now,
                device=door.device,
                type="relay.refused",
                method="remote",
                user=person.handle,
                name=person.name,
                detail={"reason": str(decision.refusal)},
            ),
        )
        return _Prepared(str(decision.refusal), logged=(house.id, row.id))
    if house.online is False:
        return _Prepared("offline")
    counted = False
    if grant is not None and grant.max_opens is not None:
        # Counted before the command goes, race-free across processes; given back if the
        # door did not open.
        counted = (
            rows_changed(
                s,
                update(Grant)
                .where(Grant.id == grant.id, Grant.opens < grant.max_opens)
                .values(opens=Grant.opens + 1),
            )
            == 1
        )
        if not counted:
            return _Prepared("used_up")
    signed = relay.sign_for(
        s, house, gateway_cmds.unlock(door.device, UNLOCK_SECONDS), person.handle
    )
    if signed is None:
        return _Prepared("setup")
    return _Prepared(None, house.gateway_id, signed, grant.id if grant else None, counted)


def _give_back(s: Session, grant_id: int) -> None:
    s.execute(
        update(Grant).where(Grant.id == grant_id, Grant.opens > 0).values(opens=Grant.opens - 1)
    )


async def open_door(relay: Relay, who: Principal, door_id: int) -> TapResult:
    tz = ZoneInfo(relay.settings.timezone)
    prep = await relay.db_call(_prepare, relay, who, door_id, tz)
    if prep.logged is not None:
        relay.changed(prep.logged[0], "access", prep.logged[1])
    if prep.refused is not None:
        return TapResult(False, prep.refused, prep.refused)
    assert prep.signed is not None
    result = await relay.publish_and_wait(prep.gateway_id, prep.signed)
    code = "offline" if result is None else str(result.get("code"))
    if code != "ok" and prep.counted and prep.grant_id is not None:
        await relay.db_call(_give_back, prep.grant_id)
    key = "offline" if result is None else i18n.outcome_key(code)
    return TapResult(code == "ok", code, key, prep.signed["id"])
