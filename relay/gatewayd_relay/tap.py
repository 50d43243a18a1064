"""A tenant's tap: check the grant, sign as the tenant, publish, wait for the gateway, say
what happened in words. The check reads the database on every tap, so a revocation made on
any process takes effect on the next tap in every process; a refused tap never reaches the
gateway and is written to the house's unlock log, where the landlord sees it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from gatewayd_relay import gateway_cmds, i18n, signing
from gatewayd_relay.auth import AuthError
from gatewayd_relay.core import Relay
from gatewayd_relay.db import rows_changed
from gatewayd_relay.deps import resolve
from gatewayd_relay.grants import decide
from gatewayd_relay.ingest import log_access
from gatewayd_relay.models import AccessEvent, Command, Door, Grant, House

UNLOCK_SECONDS = 5


@dataclass(frozen=True)
class TapResult:
    ok: bool
    #: "ok", a gateway result code, "offline", or a relay refusal ("revoked", "expired", …).
    code: str
    #: The i18n key of the words the tenant reads.
    message: str
    command: str | None = None
    #: Milliseconds from the request to the command's publication (the relay's own share).
    relay_ms: float | None = None


@dataclass(frozen=True)
class _Prepared:
    refused: str | None
    gateway_id: str = ""
    signed: dict[str, Any] | None = None
    grant_id: int | None = None
    counted: bool = False
    logged: tuple[int, int] | None = None  # (house id, access row id) of a refusal
    house_id: int = 0


#: The door, its house and the person's newest live grant for it: one query, built once.
_DOOR_GRANT = (
    select(Door, House, Grant)
    .join(House, House.id == Door.house_id)
    .outerjoin(Grant, (Grant.door_id == Door.id) & (Grant.person_id == bindparam("person")))
    .where(Door.id == bindparam("door"), Door.house_id == bindparam("house"))
    .order_by(Grant.revoked_at.is_not(None), Grant.id.desc())
    .limit(1)
)


def _prepare(
    s: Session, relay: Relay, request: Request, door_id: int, tz: ZoneInfo, cid: str
) -> _Prepared:
    # Who, which door, which grant, the key: one read-only transaction on one worker thread
    # (a refused tap and a counted visitor open are the only writes), since a person is
    # waiting at the door.
    who = resolve(request, relay, s)
    if who is None:
        raise AuthError(401, "login")
    if who.person is None:
        raise AuthError(403, "forbidden_page")
    person = who.person
    found = s.execute(
        _DOOR_GRANT, {"door": door_id, "person": person.id, "house": person.house_id}
    ).first()
    if found is None:
        return _Prepared("no_grant")
    door, house, grant = found
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
        s,
        house,
        gateway_cmds.unlock(door.device, UNLOCK_SECONDS),
        person.handle,
        record=False,
        cid=cid,
    )
    if signed is None:
        return _Prepared("setup")
    return _Prepared(
        None, house.gateway_id, signed, grant.id if grant else None, counted, house_id=house.id
    )


def _give_back(s: Session, grant_id: int) -> None:
    s.execute(
        update(Grant).where(Grant.id == grant_id, Grant.opens > 0).values(opens=Grant.opens - 1)
    )


def _record(
    s: Session, house_id: int, signed: dict[str, Any], result: dict[str, Any] | None
) -> None:
    s.add(
        Command(
            id=signed["id"],
            house_id=house_id,
            device=signed["device"],
            action=signed["action"],
            user=signed["user"],
            created=signed["iat"],
            code="no_answer" if result is None else str(result.get("code")),
            detail="" if result is None else str(result.get("detail", ""))[:500],
            answered_at=None if result is None else time.time(),
        )
    )


async def open_door(relay: Relay, request: Request, door_id: int) -> TapResult:
    tz = ZoneInfo(relay.settings.timezone)
    # The id is chosen and awaited before the worker thread signs and publishes, so the
    # command leaves from that thread at once, and its answer cannot come before the waiter.
    cid = signing.new_id()
    fut = relay.pending.expect(cid)

    def work() -> _Prepared:
        with relay.db.session() as s:
            prep = _prepare(s, relay, request, door_id, tz, cid)
        if prep.signed is not None:  # committed: a counted open is counted
            relay.publish_command(prep.gateway_id, prep.signed)
            published[0] = time.perf_counter()
        return prep

    started = time.perf_counter()
    published = [started]
    try:
        prep = await asyncio.to_thread(work)
    except BaseException:
        relay.pending.forget(cid)
        raise
    if prep.logged is not None:
        relay.changed(prep.logged[0], "access", prep.logged[1])
    if prep.refused is not None:
        relay.pending.forget(cid)
        return TapResult(False, prep.refused, prep.refused)
    assert prep.signed is not None
    result = await relay.wait_result(cid, fut)
    code = "offline" if result is None else str(result.get("code"))
    # Written after the answer, off the tenant's wait.
    relay.background(relay.db_call(_record, prep.house_id, prep.signed, result))
    if code != "ok" and prep.counted and prep.grant_id is not None:
        await relay.db_call(_give_back, prep.grant_id)
    key = "offline" if result is None else i18n.outcome_key(code)
    return TapResult(code == "ok", code, key, cid, round((published[0] - started) * 1000, 2))
