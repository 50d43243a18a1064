"""The daemon against a real mosquitto: status, last will, signed commands and refusals."""

from __future__ import annotations

import json
import time

from tests.harness import Broker, Daemon, Probe, Site


def result_for(probe: Probe, site: Site, cid: str | None, timeout: float = 5.0) -> dict:
    return probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cid, timeout)


def test_status_online_retained_then_last_will_on_kill(
    broker: Broker, site: Site, daemon: Daemon
) -> None:
    late = Probe(
        broker.port, f"{site.root}/status"
    )  # subscribes after the fact: sees only the retained copy
    status = late.wait(f"{site.root}/status", lambda s: s["online"])
    assert status["fire_mode"] is False and status["version"]
    assert late.on(f"{site.root}/status")[0].retain
    daemon.kill()
    offline = late.wait(f"{site.root}/status", lambda s: s["online"] is False, timeout=10)
    assert offline == {"online": False, "version": status["version"], "started": status["started"]}
    late.close()


def test_clean_stop_publishes_offline_and_alarms_retained(
    broker: Broker, site: Site, daemon: Daemon, probe: Probe
) -> None:
    probe.wait(f"{site.root}/status", lambda s: s["online"])
    alarms = probe.wait(f"{site.root}/alarms")
    assert alarms["active"] == []
    assert daemon.stop() == 0
    assert probe.wait(f"{site.root}/status", lambda s: s["online"] is False)["online"] is False


def test_signed_ping_answered_ok(site: Site, daemon: Daemon, probe: Probe) -> None:
    cmd = site.command(site.gateway_id, "ping")
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    res = result_for(probe, site, cmd["id"])
    assert res["ok"] is True and res["code"] == "ok"
    assert res["ms"] >= 0 and abs(res["data"]["pong"] - time.time()) < 5


def test_refusals_carry_the_contract_codes(site: Site, daemon: Daemon, probe: Probe) -> None:
    cmd_topic = f"{site.root}/cmd"
    forged = site.command(site.gateway_id, "ping", key=b"\x01" * 32)
    expired = site.command(site.gateway_id, "ping", iat=time.time() - 100, lifetime=30)
    future = site.command(site.gateway_id, "ping", iat=time.time() + 120)
    too_long = site.command(site.gateway_id, "ping", lifetime=3600)
    unknown = site.command("no-such-device", "unlock")
    unsupported = site.command(site.gateway_id, "self_destruct")
    tampered = site.command(site.gateway_id, "ping")
    tampered["user"] = "landlord"  # signed as tenant-302: any change breaks the signature
    cases = [
        (forged, "bad_signature"),
        (expired, "expired"),
        (future, "expired"),
        (too_long, "invalid"),
        (unknown, "unknown_device"),
        (unsupported, "unsupported"),
        (tampered, "bad_signature"),
    ]
    for cmd, _ in cases:
        probe.publish(cmd_topic, json.dumps(cmd))
    for cmd, code in cases:
        res = result_for(probe, site, cmd["id"])
        assert (res["code"], res["ok"]) == (code, False), (cmd, res)
    probe.publish(cmd_topic, b"\xff\xfe not json at all")
    res = result_for(probe, site, None)
    assert res["code"] == "invalid" and res["ok"] is False
    probe.publish(cmd_topic, json.dumps({"id": "x1", "device": site.gateway_id}))
    assert result_for(probe, site, "x1")["code"] == "invalid"
    assert daemon.alive
    ping = site.command(site.gateway_id, "ping")
    probe.publish(cmd_topic, json.dumps(ping))
    assert result_for(probe, site, ping["id"])["code"] == "ok"


def test_replayed_id_refused_also_after_restart(site: Site, daemon: Daemon, probe: Probe) -> None:
    cmd = site.command(site.gateway_id, "ping", lifetime=120)
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    assert result_for(probe, site, cmd["id"])["code"] == "ok"
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    time.sleep(0.3)
    results = [m.json() for m in probe.on(f"{site.root}/cmd/result") if m.json()["id"] == cmd["id"]]
    assert [r["code"] for r in results] == ["ok", "replayed"]
    daemon.kill()  # not even a clean stop: the cache must already be on disk
    daemon.start()
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    wait_codes = lambda: [
        m.json()["code"] for m in probe.on(f"{site.root}/cmd/result") if m.json()["id"] == cmd["id"]
    ]
    from tests.harness import wait_until

    wait_until(lambda: len(wait_codes()) == 3, 5, "the third result")
    assert wait_codes() == ["ok", "replayed", "replayed"]


def test_flood_beyond_rate_limit_is_refused_and_daemon_survives(
    site: Site, daemon: Daemon, probe: Probe
) -> None:
    # The site allows 20 commands a minute per device.
    cmds = [site.command(site.gateway_id, "ping") for _ in range(30)]
    for cmd in cmds:
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    codes = [result_for(probe, site, c["id"])["code"] for c in cmds]
    # A burst of 20 passes; the bucket then refills one command per 3 s, so a slow run may
    # let one or two more through.
    assert codes[:20] == ["ok"] * 20
    assert codes.count("rate_limited") >= 8
    assert set(codes) == {"ok", "rate_limited"}
    assert daemon.alive


def test_broker_restart_reconnects_and_republishes_status(
    broker: Broker, site: Site, daemon: Daemon
) -> None:
    broker.stop()
    time.sleep(0.5)
    broker.start()
    probe = Probe(broker.port)
    try:
        # mosquitto without persistence forgot the retained status: the gateway must republish it.
        assert probe.wait(f"{site.root}/status", lambda s: s["online"], timeout=15)["online"]
        cmd = site.command(site.gateway_id, "ping")
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
        assert result_for(probe, site, cmd["id"])["code"] == "ok"
    finally:
        probe.close()
