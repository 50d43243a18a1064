"""The audit trail of every change to who may do what (grants, people, invites, keys,
accounts): written in the same transaction as the change, so neither exists without the
other."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatewayd_relay.models import AuditEntry


def record(s: Session, actor: str, action: str, house_id: int | None = None, **detail: Any) -> None:
    s.add(AuditEntry(ts=time.time(), actor=actor, action=action, house_id=house_id, detail=detail))


def entries(s: Session, house_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if house_id is not None:
        q = q.where(AuditEntry.house_id == house_id)
    return [
        {"ts": e.ts, "actor": e.actor, "action": e.action, "house": e.house_id, "detail": e.detail}
        for e in s.scalars(q)
    ]
