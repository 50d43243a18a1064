"""How stored rows look to pages, the JSON API and live updates: one serializer per concept,
so a page rendered on one process and an update pushed by another agree."""

from __future__ import annotations

from typing import Any

from gatewayd_relay.models import AccessEvent, Door, Grant, House, Incident, IncidentEntry, Person


def house(h: House) -> dict[str, Any]:
    return {
        "id": h.id,
        "gateway_id": h.gateway_id,
        "name": h.name,
        "village": h.village,
        "enrolled": h.enrolled_at is not None,
        "key_fingerprint": h.key_fingerprint,
        "online": h.online,
        "fire_mode": h.fire_mode,
    }


def door(d: Door) -> dict[str, Any]:
    st = d.state or {}
    return {
        "id": d.id,
        "house": d.house_id,
        "device": d.device,
        "name": d.name or d.device,
        "lock": st.get("lock"),
        "door": st.get("door"),
        "connected": st.get("connected"),
        "updated": d.updated,
    }


def grant(g: Grant) -> dict[str, Any]:
    return {
        "id": g.id,
        "person": g.person_id,
        "door": g.door_id,
        "valid_from": g.valid_from,
        "valid_until": g.valid_until,
        "hours": g.hours,
        "max_opens": g.max_opens,
        "opens": g.opens,
        "revoked": g.revoked_at is not None,
    }


def person(p: Person, grants: list[Grant]) -> dict[str, Any]:
    return {
        "id": p.id,
        "house": p.house_id,
        "name": p.name,
        "handle": p.handle,
        "kind": p.kind,
        "revoked": p.revoked_at is not None,
        "grants": [grant(g) for g in grants],
    }


def access(e: AccessEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "house": e.house_id,
        "ts": e.ts,
        "device": e.device,
        "type": e.type,
        "method": e.method,
        "user": e.user,
        "name": e.name,
        "detail": e.detail,
    }


def incident(i: Incident, h: House, entries: list[IncidentEntry] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": i.id,
        "house": h.id,
        "house_name": h.name,
        "village": h.village,
        "gateway_id": h.gateway_id,
        "alarm_id": i.alarm_id,
        "device": i.device,
        "type": i.type,
        "severity": i.severity,
        "since": i.since,
        "state": i.state,
        "cleared_at": i.cleared_at,
        "level": i.level,
        "acked_at": i.acked_at,
        "acked_by": i.acked_by,
        "closed_at": i.closed_at,
        "closed_by": i.closed_by,
        "close_note": i.close_note,
        "data": i.data,
    }
    if entries is not None:
        out["log"] = [
            {"ts": e.ts, "kind": e.kind, "who": e.who, "level": e.level, "note": e.note}
            for e in entries
        ]
    return out
