"""Broker failover: ``[mqtt] url`` lists two real mosquittos; the one the daemon is on is killed
with SIGKILL while events flow. The daemon is on the other within its backoff, loses no QoS 1
event, republishes its retained picture there, answers a command sent there exactly once, and
stays there when the first broker comes back (sticky).

mosquittos do not share sessions or retained messages: what the second one holds is what the
daemon sent it after the failover, which is the point (a node's death takes its wills and its
retained copies with it)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.hardening_support import control, plugin_env
from tests.harness import (
    Broker,
    Daemon,
    Probe,
    ReceiverThread,
    Site,
    free_port,
    make_site,
    smoke_config,
    wait_until,
)

EVENTS = 400


def event_ids(probe: Probe, site: Site) -> list[str]:
    out = []
    for m in probe.on(f"{site.root}/events/+"):
        try:
            out.append(str(m.json()["id"]))
        except (ValueError, KeyError):
            continue
    return out


def emitted(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    assert m is not None, f"no {name} in the scrape"
    return float(m.group(1))


def retained(port: int, topic: str) -> Any:
    """What a new subscriber to ``topic`` on the broker at ``port`` gets at once: its retained
    message, as JSON."""
    fresh = Probe(port, subscribe=topic)
    try:
        return fresh.wait(topic, timeout=5)
    finally:
        fresh.close()


def test_kill9_the_broker_in_use_failover_loses_nothing_and_sticks(tmp_path: Path) -> None:
    brokers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        brokers.append(Broker(tmp_path / name))
        brokers[-1].start()
    a, b = brokers
    # Subscribed before the daemon starts: events are not retained.
    on_a, on_b = Probe(a.port), Probe(b.port)
    log = tmp_path / "emitted"
    metrics_port = free_port()
    receiver = ReceiverThread(tmp_path / "srb433")
    detector = receiver.rx.detector("1A2B0301")
    body = (
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n\n'
        f'[[buses]]\nname = "gen"\ndriver = "burst"\nevents = {EVENTS}\nbatch = 5\n'
        f'interval = 0.05\ndelay = 1.0\nlog = "{log}"\n\n'
    ) + smoke_config(receiver.rx.path, {"smoke-301": "1A2B0301"})
    site = make_site(tmp_path, [a.url, b.url], body)
    daemon = Daemon(site, env=plugin_env(tmp_path, site))
    daemon.start()
    sock = site.dir / "control.sock"
    try:
        receiver.call(detector.heartbeat(2950, -58))
        receiver.call(detector.alarm(150))
        on_a.wait(f"{site.root}/alarms", lambda x: len(x["active"]) > 0)
        assert f"connected to broker 127.0.0.1:{a.port} (url 1 of 2)" in daemon.output()
        assert metric(metrics_port, "gatewayd_broker_url_index") == 0
        # Events flowing through the first broker, the burst not over: kill it, no goodbye.
        wait_until(lambda: len(event_ids(on_a, site)) >= 60, 10, "events through broker a")
        assert len(emitted(log)) < EVENTS
        assert a.proc is not None
        a.proc.kill()
        killed = time.monotonic()
        a.proc.wait(5)
        a.proc = None
        # The detector's state changes while the gateway is between brokers.
        receiver.call(detector.heartbeat(2610, -71))
        # Back on the other within its backoff (reconnect_max_seconds = 1.0; the loss itself is
        # seen at once on loopback), with a log line that says so.
        switched = f"failover: connected to broker 127.0.0.1:{b.port} (url 2 of 2)"
        wait_until(lambda: switched in daemon.output(), 5, "the failover to broker b")
        assert time.monotonic() - killed < 3.0
        # No QoS 1 event lost: every emitted id reached a subscriber on one broker or the other
        # (one PUBACK lost with broker a is sent again to b: at least once).
        wait_until(lambda: len(emitted(log)) == EVENTS, 15, "the whole burst emitted")
        wanted = set(emitted(log))
        wait_until(
            lambda: wanted <= set(event_ids(on_a, site)) | set(event_ids(on_b, site)),
            20,
            "every event at a subscriber",
        )
        assert set(event_ids(on_b, site)) - set(event_ids(on_a, site))  # the rest went to b
        wait_until(lambda: control(sock, {"cmd": "status"})["outbox_depth"] == 0, 10, "drained")
        # The retained picture on broker b is the current one (b has only the daemon's word).
        status = retained(b.port, f"{site.root}/status")
        assert status["online"] is True and status["fire_mode"] is True
        alarms = retained(b.port, f"{site.root}/alarms")
        now = control(sock, {"cmd": "alarms"})["alarms"]
        assert [x["id"] for x in alarms["active"]] == [x["id"] for x in now]
        assert "smoke-301/smoke.alarm" in [x["id"] for x in alarms["active"]]
        state = retained(b.port, f"{site.root}/state/smoke-301")
        [dev] = [d for d in control(sock, {"cmd": "status"})["devices"] if d["id"] == "smoke-301"]
        assert {k: v for k, v in state.items() if k != "ts"} == {
            "room": "301",
            **{k: v for k, v in dev["state"].items() if k != "ts"},
        }, (state, dev)
        assert state["battery_mv"] == 2610  # the heartbeat heard between the brokers
        devices = retained(b.port, f"{site.root}/devices")
        assert [d["id"] for d in devices["devices"]] == ["smoke-301"]
        # A command sent on the new broker: exactly one result.
        cmd = site.command(site.gateway_id, "ping")
        on_b.publish(f"{site.root}/cmd", json.dumps(cmd))
        result = on_b.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])
        assert result["code"] == "ok"
        assert metric(metrics_port, "gatewayd_broker_url_index") == 1
        # Sticky: broker a back does not pull the daemon over; it stays on b.
        connects = metric(metrics_port, "gatewayd_broker_connects_total")
        a.start()
        time.sleep(2.0)
        results = [m for m in on_b.on(f"{site.root}/cmd/result") if m.json()["id"] == cmd["id"]]
        assert len(results) == 1
        assert metric(metrics_port, "gatewayd_broker_connects_total") == connects
        assert metric(metrics_port, "gatewayd_broker_url_index") == 1
        assert daemon.alive
    finally:
        daemon.stop()
        on_a.close()
        on_b.close()
        for broker in brokers:
            broker.stop()
        receiver.close()


def test_a_dead_first_node_is_passed_over_at_start(tmp_path: Path, broker: Broker) -> None:
    """The first url down when the daemon starts: it tries the next one after its backoff and
    is ready there; the log names both."""
    dead = free_port()
    site = make_site(tmp_path, [f"mqtt://127.0.0.1:{dead}", broker.url])
    probe = Probe(broker.port)
    daemon = Daemon(site)
    try:
        daemon.start()
        out = daemon.output()
        assert re.search(
            rf"broker 127\.0\.0\.1:{dead} unreachable \(.*\); retrying in [\d.]+ s "
            rf"on 127\.0\.0\.1:{broker.port}",
            out,
        ), out
        assert f"connected to broker 127.0.0.1:{broker.port} (url 2 of 2)" in out
        status = probe.wait(f"{site.root}/status", lambda s: s["online"])
        assert status["online"] is True
    finally:
        daemon.stop()
        probe.close()
