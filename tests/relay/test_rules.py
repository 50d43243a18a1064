"""The relay's rules without a server: the grant decision, login rate limiting, and an
incident's life (pushed once, escalated once, stopped by an acknowledgement), on a real
SQLite database migrated by the relay's own Alembic migration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gatewayd_relay import auth, incidents
from gatewayd_relay.db import Database
from gatewayd_relay.grants import Refusal, decide, parse_hours, within_hours
from gatewayd_relay.models import Grant, House, Person
from gatewayd_relay.provisioning import (
    GATEWAY_ID,
    ProvisioningError,
    create_account,
    create_house,
)
from gatewayd_relay.settings import Settings

from gatewayd.config_schema import ID_PATTERN

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 21, 30, tzinfo=TZ).timestamp()


def grant(**kw: object) -> Grant:
    base: dict[str, object] = {
        "valid_from": NOW - 3600,
        "valid_until": None,
        "hours": "",
        "max_opens": None,
        "opens": 0,
        "revoked_at": None,
    }
    return Grant(**{**base, **kw})


def tenant(revoked: float | None = None) -> Person:
    return Person(name="李伟", handle="li.wei", kind="tenant", revoked_at=revoked)


@pytest.mark.parametrize(
    ("who", "g", "refusal"),
    [
        (tenant(), grant(), None),
        (tenant(revoked=NOW - 1), grant(), Refusal.REVOKED),
        (None, grant(), Refusal.REVOKED),
        (tenant(), None, Refusal.NO_GRANT),
        (tenant(), grant(revoked_at=NOW - 1), Refusal.REVOKED),
        (tenant(), grant(valid_from=NOW + 60), Refusal.NOT_YET),
        (tenant(), grant(valid_until=NOW), Refusal.EXPIRED),
        (tenant(), grant(hours="07:00-21:00"), Refusal.OUTSIDE_HOURS),
        (tenant(), grant(hours="21:00-06:00"), None),  # wraps midnight
        (tenant(), grant(max_opens=3, opens=3), Refusal.USED_UP),
        (tenant(), grant(max_opens=3, opens=2), None),
    ],
)
def test_grant_decision(who: Person | None, g: Grant | None, refusal: Refusal | None) -> None:
    d = decide(who, g, NOW, TZ)
    assert (d.allowed, d.refusal) == (refusal is None, refusal)


def test_hours_are_validated_and_wrap_midnight() -> None:
    assert parse_hours("22:00-06:00") == (1320, 360)
    for bad in ("7:00-22:00", "22:00-22:00", "24:00-01:00", "junk"):
        with pytest.raises(ValueError, match="hours"):
            parse_hours(bad)
    late = datetime(2026, 11, 23, 2, 0, tzinfo=TZ).timestamp()
    assert within_hours("22:00-06:00", late, TZ)
    assert not within_hours("07:00-22:00", late, TZ)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(f"sqlite:///{tmp_path}/r.db")
    d.migrate()
    with d.session() as s:
        create_account(s, "t", "wang", "pw-wang-123", "landlord", "王房东")
        create_account(s, "t", "li", "pw-li-1234", "grid", "李网格员", "柳墅村")
        create_account(
            s, "t", "zhang", "pw-zhang-12", "grid", "张村长", "柳墅村", escalation_rank=1
        )
        create_house(s, "t", "gw-1", "17号", "柳墅村", "wang")
    yield d
    d.close()


def test_a_house_takes_only_an_id_its_gateway_accepts(db: Database) -> None:
    """The relay must not enrol a gateway id the gateway itself refuses (gateway.toml's rule)."""
    assert GATEWAY_ID.pattern == ID_PATTERN  # the relay's copy (it never imports gatewayd)
    bad = ("gw.1", "gw/1", "gw+", "-gw", "gw 1", "gw-1\n", "", "g" * 65)
    for n, gateway_id in enumerate(bad):
        with db.session() as s, pytest.raises(ProvisioningError, match="gateway id: 1-64"):
            create_house(s, "t", gateway_id, f"{n}号", "柳墅村", "wang")
    with db.session() as s:
        house, _code = create_house(s, "t", "G" * 64, "18号", "柳墅村", "wang")
        assert house.gateway_id == "G" * 64


def test_login_is_limited_per_username_and_per_address(db: Database) -> None:
    st = Settings()
    for i in range(5):
        with db.session() as s:
            assert auth.login(s, "wang", f"wrong-{i}", "10.0.0.1", st) is None
    with db.session() as s, pytest.raises(auth.RateLimited) as limited:
        auth.login(s, "wang", "pw-wang-123", "10.0.0.9", st)  # the right password, elsewhere
    assert 0 < limited.value.retry_after <= st.login_window
    with db.session() as s, pytest.raises(auth.RateLimited):
        auth.login(s, "li", "pw-li-1234", "10.0.0.1", st)  # another user, the same address
    with db.session() as s:
        done = auth.login(s, "li", "pw-li-1234", "10.0.0.2", st)
    assert done is not None and done[0].username == "li"


def alarm(since: float) -> dict[str, object]:
    return {
        "id": "smoke-301/smoke.alarm",
        "device": "smoke-301",
        "type": "smoke.alarm",
        "severity": "critical",
        "since": since,
        "acked_by": None,
    }


def test_an_incident_is_pushed_once_escalated_once_and_stopped_by_an_ack(db: Database) -> None:
    t0 = time.time()
    with db.session() as s:
        house = s.get(House, 1)
        assert house is not None
        _changed, pushes = incidents.from_alarms(s, house, [alarm(t0)], t0, 60)
    assert [(p.level, sorted(a.username for a in p.accounts)) for p in pushes] == [
        (0, ["li", "wang"])
    ]
    with db.session() as s:  # the same list again (every process receives it): no new push
        house = s.get(House, 1)
        assert house is not None
        assert incidents.from_alarms(s, house, [alarm(t0)], t0 + 1, 60)[1] == []
    # Two processes look for due escalations at the same moment: the first claims it, the
    # second finds the level already moved (PostgreSQL's two-process run is in the browser
    # suite).
    with db.session() as s:
        due1 = incidents.escalate_due(s, t0 + 61, 60)
    with db.session() as s:
        due2 = incidents.escalate_due(s, t0 + 61, 60)
    assert [(p.level, [a.username for a in p.accounts]) for p in due1] == [(1, ["zhang"])]
    assert due2 == []
    with db.session() as s:
        [inc] = incidents.visible(s, [1])
        zhang = s.merge(due1[0].accounts[0])
        assert incidents.acknowledge(s, inc, zhang, t0 + 62)
        assert not incidents.acknowledge(s, inc, zhang, t0 + 63)  # recorded, not first
    with db.session() as s:
        assert incidents.escalate_due(s, t0 + 1000, 60) == []
        [inc] = incidents.visible(s, [1])
        assert (inc.acked_by, inc.level) == ("zhang", 1)
        kinds = [e.kind for e in incidents.entries(s, inc.id)]
        assert kinds == ["escalated", "ack", "ack"]


def test_file_and_webhook_notifiers_deliver_and_a_failure_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    import asyncio
    import http.server
    import json
    import threading

    from gatewayd_relay.notify import Fanout, FileNotifier, Notification, WebhookNotifier

    from tests.harness import free_port

    got: list[dict[str, object]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    note = Notification(
        1,
        "17号",
        "gw-1",
        "smoke-301/smoke.alarm",
        "smoke.alarm",
        "critical",
        "smoke-301",
        NOW,
        0,
        "wang",
        "王房东",
        "13800000001",
        "/alarms/1",
    )
    dead = WebhookNotifier(f"http://127.0.0.1:{free_port()}/nobody", timeout=1)
    fanout = Fanout(
        [
            dead,
            WebhookNotifier(f"http://127.0.0.1:{port}/push"),
            FileNotifier(str(tmp_path / "n.jsonl")),
        ]
    )
    try:
        errors = asyncio.run(fanout.send(note))
    finally:
        server.shutdown()
        server.server_close()
    assert len(errors) == 1 and errors[0].startswith("WebhookNotifier")
    assert got[0]["phone"] == "13800000001" and got[0]["alarm_id"] == "smoke-301/smoke.alarm"
    [line] = (tmp_path / "n.jsonl").read_text().splitlines()
    assert json.loads(line)["username"] == "wang"
