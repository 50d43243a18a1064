"""The relay's JSON API against a real relay process and a real mosquitto, with a stand-in
gateway that checks each command's signature with the gateway's own verifier (so the relay's
signer is checked against the contract's other side) and answers as told."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gatewayd.commands.signing import verify
from tests.harness import Broker
from tests.relay.relay_proc import PASSWORD, Api, RelayData, RelayProcess

GW = "gw-api"


@dataclass
class StandIn:
    """Answers `{root}/cmd` like a gateway would: bad_signature unless the contract's HMAC
    checks out with ``key``; else ``answer`` (None: stay silent, as an offline gateway)."""

    port: int
    key: bytes
    answer: str | None = "ok"
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe(f"pingan/v1/{GW}/cmd", 1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        cmd = json.loads(msg.payload)
        self.seen.append(cmd)
        code = self.answer if verify(self.key, cmd) else "bad_signature"
        if code is not None:
            body = {"id": cmd["id"], "ok": code == "ok", "code": code, "ms": 1.0}
            self.client.publish(f"pingan/v1/{GW}/cmd/result", json.dumps(body), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Env:
    relay: RelayProcess
    data: RelayData
    gateway: StandIn
    house_id: int
    door_id: int
    wang: Api


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    tmp = Path(tempfile.mkdtemp(prefix="relay-api-"))
    broker = Broker(tmp)
    broker.start()
    data = RelayData(tmp, f"sqlite:///{tmp}/relay.db")
    data.village()
    house_id, code = data.house(GW)
    key = os.urandom(32)
    gateway = StandIn(broker.port, key)
    relay = RelayProcess(tmp, data.db.url, broker.port, extra=("--action-timeout", "1.5")).start()
    wang = Api(relay.url, "wang")
    try:
        r = httpx.post(
            f"{relay.url}/api/enroll", json={"code": code, "gateway_id": GW, "key": key.hex()}
        )
        assert r.status_code == 200, r.text
        door = wang.post(f"/api/houses/{house_id}/doors", {"device": "door-main", "name": "正门"})
        yield Env(relay, data, gateway, house_id, door["id"], wang)
    finally:
        wang.close()
        relay.stop()
        gateway.close()
        data.close()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class Phone:
    def __init__(self, env: Env, invite_url: str) -> None:
        self.client = httpx.Client(base_url=env.relay.url, timeout=10)
        r = self.client.post(f"/api/invites/{invite_url.rsplit('/', 1)[1]}/accept")
        assert r.status_code == 200, r.text
        # Secure cookies are not sent over plain http by httpx's jar; a phone's browser on
        # https would. Here the test hands the cookie over as the browser would.
        self.cookie = r.headers["set-cookie"].split(";")[0]
        self.csrf = r.json()["csrf"]

    def open(self, door: int, **headers: str) -> httpx.Response:
        h = {"Cookie": self.cookie, "X-CSRF-Token": self.csrf, **headers}
        return self.client.post(f"/api/phone/doors/{door}/open", headers=h)

    def close(self) -> None:
        self.client.close()


def person(env: Env, name: str, **grant: Any) -> Phone:
    out = env.wang.post(
        f"/api/houses/{env.house_id}/tenants",
        {"name": name, "grants": [{"door": env.door_id, **grant}]},
    )
    return Phone(env, out["invite_url"])


def test_a_signed_tap_is_verified_by_the_gateways_own_verifier(env: Env) -> None:
    phone = person(env, "周一")
    try:
        r = phone.open(env.door_id)
        assert r.json()["code"] == "ok", r.text
        cmd = next(c for c in env.gateway.seen if c["id"] == r.json()["command"])
        assert (cmd["device"], cmd["action"], cmd["args"]) == (
            "door-main",
            "unlock",
            {"seconds": 5},
        )
        assert cmd["user"].startswith("tenant-")
        assert 0 < cmd["exp"] - cmd["iat"] <= 30  # short-lived
    finally:
        phone.close()


def test_cookie_requests_need_the_csrf_token_and_the_own_origin(env: Env) -> None:
    phone = person(env, "吴二")
    try:
        sent = len(env.gateway.seen)
        assert phone.open(env.door_id, **{"X-CSRF-Token": "forged"}).status_code == 403
        assert phone.open(env.door_id, Origin="https://evil.example").status_code == 403
        assert phone.open(env.door_id, **{"Sec-Fetch-Site": "same-site"}).status_code == 403
        assert len(env.gateway.seen) == sent
        ok = phone.open(env.door_id, Origin=env.relay.url, **{"Sec-Fetch-Site": "same-origin"})
        assert ok.json()["code"] == "ok"
    finally:
        phone.close()


def test_visitor_pass_counts_opens_and_a_silent_gateway_costs_none(env: Env) -> None:
    out = env.wang.post(
        f"/api/houses/{env.house_id}/passes", {"name": "保洁", "door": env.door_id, "max_opens": 1}
    )
    phone = Phone(env, out["invite_url"])
    try:
        env.gateway.answer = None  # the gateway is offline
        r = phone.open(env.door_id).json()
        assert (r["code"], r["message"]) == ("offline", "门禁离线，请稍后再试或联系房东")
        env.gateway.answer = "ok"
        assert phone.open(env.door_id).json()["code"] == "ok"  # the open was given back
        used = phone.open(env.door_id).json()
        assert (used["code"], used["message"]) == ("used_up", "访客通行次数已用完")
    finally:
        env.gateway.answer = "ok"
        phone.close()


def test_hours_window_is_enforced_in_the_relays_time_zone(env: Env) -> None:
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    phone = person(env, "郑三", hours=f"{start:%H:%M}-{end:%H:%M}")
    try:
        sent = len(env.gateway.seen)
        r = phone.open(env.door_id).json()
        assert (r["code"], r["message"]) == ("outside_hours", "现在不在允许开门的时段")
        assert len(env.gateway.seen) == sent
        log = env.wang.get(f"/api/houses/{env.house_id}/log")
        assert log[0]["type"] == "relay.refused"
        assert log[0]["detail"] == {"reason": "outside_hours"}
        assert log[0]["name"] == "郑三"
    finally:
        phone.close()


def test_every_grant_change_is_audited_and_revocation_is_immediate(env: Env) -> None:
    out = env.wang.post(
        f"/api/houses/{env.house_id}/tenants", {"name": "王五", "handle": "wang.wu"}
    )
    pid = out["person"]["id"]
    grant = env.wang.post(
        f"/api/people/{pid}/grants", {"door": env.door_id, "valid_until": time.time() + 86400}
    )
    phone = Phone(env, out["invite_url"])
    try:
        assert phone.open(env.door_id).json()["code"] == "ok"
        env.wang.post(f"/api/grants/{grant['id']}/revoke")
        assert phone.open(env.door_id).json()["code"] == "revoked"
    finally:
        phone.close()
    trail = [(e["actor"], e["action"]) for e in env.wang.get(f"/api/houses/{env.house_id}/audit")]
    assert trail[:4] == [
        ("wang", "grant.revoke"),
        ("tenant:wang.wu", "phone.bind"),
        ("wang", "grant.add"),
        ("wang", "invite.create"),
    ]
    assert ("wang", "tenant.add") in trail


def test_a_landlord_sees_only_their_houses_and_a_grid_worker_only_their_village(env: Env) -> None:
    with env.data.db.session() as s:
        from gatewayd_relay.provisioning import create_account

        create_account(s, "test", "other", PASSWORD, "landlord", "别家房东")
        create_account(s, "test", "far", PASSWORD, "grid", "外村网格员", "别的村")
    other, far, li = (
        Api(env.relay.url, "other"),
        Api(env.relay.url, "far"),
        Api(env.relay.url, "li"),
    )
    try:
        assert other.get("/api/houses") == []
        assert other.client.get(f"/api/houses/{env.house_id}").status_code == 404
        assert (
            other.client.post(f"/api/houses/{env.house_id}/tenants", json={"name": "x"}).status_code
            == 404
        )
        assert far.get("/api/houses") == []
        assert [h["gateway_id"] for h in li.get("/api/houses")] == [GW]
        # A grid worker sees the house but does not manage its tenants.
        assert (
            li.client.post(f"/api/houses/{env.house_id}/tenants", json={"name": "x"}).status_code
            == 404
        )
    finally:
        for a in (other, far, li):
            a.close()


def test_enrollment_codes_work_once_and_only_for_their_gateway(env: Env) -> None:
    admin = Api(env.relay.url, "admin")
    try:
        code = admin.post(f"/api/houses/{env.house_id}/enrollment")["code"]
        key = os.urandom(32).hex()
        wrong = httpx.post(
            f"{env.relay.url}/api/enroll", json={"code": code, "gateway_id": "gw-other", "key": key}
        )
        assert wrong.status_code == 403
        short = httpx.post(
            f"{env.relay.url}/api/enroll", json={"code": code, "gateway_id": GW, "key": "00" * 16}
        )
        assert short.status_code == 422
        assert (
            admin.client.post(
                "/api/enroll", json={"code": "NOPE0-NOPE0", "gateway_id": GW, "key": key}
            ).status_code
            == 403
        )
        # Not used: the code still works; and then never again. Put the stand-in's key back.
        keep = env.gateway.key.hex()
        ok = httpx.post(
            f"{env.relay.url}/api/enroll", json={"code": code, "gateway_id": GW, "key": keep}
        )
        assert (ok.status_code, ok.json()["rotated"]) == (200, True)
        again = httpx.post(
            f"{env.relay.url}/api/enroll", json={"code": code, "gateway_id": GW, "key": keep}
        )
        assert again.status_code == 403
    finally:
        admin.close()


def test_keys_are_sealed_at_rest(env: Env) -> None:
    from gatewayd_relay.models import House

    with env.data.db.session() as s:
        house = s.get(House, env.house_id)
        assert house is not None and house.key_sealed is not None
        assert env.gateway.key not in house.key_sealed
        assert env.data.keys.open(GW, house.key_sealed) == env.gateway.key
        with pytest.raises(Exception, match="does not decrypt"):
            env.data.keys.open("gw-elsewhere", house.key_sealed)


def test_every_page_action_is_in_the_openapi_document(env: Env) -> None:
    doc = httpx.get(f"{env.relay.url}/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/api/login", "post"),
        ("/api/phone/doors", "get"),
        ("/api/phone/doors/{door_id}/open", "post"),
        ("/api/houses/{house_id}/tenants", "post"),
        ("/api/houses/{house_id}/passes", "post"),
        ("/api/people/{person_id}/revoke", "post"),
        ("/api/houses/{house_id}/log", "get"),
        ("/api/alarms/{inc_id}/ack", "post"),
        ("/api/alarms/{inc_id}/close", "post"),
        ("/api/alarms/{inc_id}/fire_confirm", "post"),
        ("/api/enroll", "post"),
        ("/api/stream", "get"),
    ]:
        assert method in paths.get(path, {}), path


def test_fire_confirm_and_ack_reach_the_gateway_signed_as_the_person(env: Env) -> None:
    from tests.harness import Probe

    probe = Probe(_broker_port(env))
    try:
        alarm = {
            "id": "smoke-301/smoke.alarm",
            "device": "smoke-301",
            "type": "smoke.alarm",
            "severity": "critical",
            "since": time.time(),
            "acked_by": None,
        }
        probe.publish(f"pingan/v1/{GW}/alarms", json.dumps({"ts": time.time(), "active": [alarm]}))
        inc = None
        deadline = time.monotonic() + 10
        while inc is None and time.monotonic() < deadline:
            inc = next(
                (
                    i
                    for i in env.wang.get("/api/alarms")
                    if i["alarm_id"] == alarm["id"] and not i["closed_at"]
                ),
                None,
            )
            time.sleep(0.05)
        assert inc is not None
        out = env.wang.post(f"/api/alarms/{inc['id']}/fire_confirm")
        assert out["gateway_code"] == "ok"
        [cmd] = [c for c in env.gateway.seen if c["action"] == "fire_confirm"]
        assert (cmd["device"], cmd["args"], cmd["user"]) == (GW, {"alarm": alarm["id"]}, "wang")
        acked = env.wang.post(f"/api/alarms/{inc['id']}/ack", {"note": "在路上"})
        assert acked["incident"]["acked_by"] == "wang"
        deadline = time.monotonic() + 10
        while (
            not [c for c in env.gateway.seen if c["action"] == "ack_alarm"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        [ack] = [c for c in env.gateway.seen if c["action"] == "ack_alarm"]
        assert (ack["args"], ack["user"]) == ({"alarm": alarm["id"]}, "wang")
        log = env.wang.get(f"/api/alarms/{inc['id']}")["log"]
        assert [(e["kind"], e["who"]) for e in log if e["kind"] in ("fire_confirm", "gateway.fire_confirm", "ack")] == [
            ("fire_confirm", "wang"), ("gateway.fire_confirm", "wang"), ("ack", "wang"),
        ]  # fmt: skip
        closed = env.wang.post(f"/api/alarms/{inc['id']}/close", {"note": "厨房油烟"})["incident"]
        assert (closed["closed_by"], closed["close_note"]) == ("wang", "厨房油烟")
    finally:
        probe.publish(f"pingan/v1/{GW}/alarms", json.dumps({"ts": time.time(), "active": []}))
        probe.close()


def _broker_port(env: Env) -> int:
    return int(env.relay.args[env.relay.args.index("--broker") + 1].rsplit(":", 1)[1])
