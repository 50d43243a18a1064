"""The real daemon on the 3-node NATS cluster, ``[mqtt] url`` listing all three nodes.

The node the gateway is on is killed -9 while the gateway sends a burst of QoS 1 events and the
platform (on a surviving node) sends signed commands one at a time, each awaiting its result as
the relay does. The node chosen is the leader of the cluster's MQTT sessions stream: the worst
one, whose loss stalls new sessions on the survivors for 5-11 s (the "cluster's recovery"),
which is on top of the gateway's own reconnect backoff.

The platform's view is taken on a node the gateway is not on, so everything it sees crossed the
cluster: events counted by id, one result per command, the retained status, alarms and device
state, and (a daemon killed) the gateway's last will."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.nats_cluster import LEADER_LOSS_STALL, NatsCluster
from gatewayd.uplink.link import SUBSCRIBE_RETRY_MAX_SECONDS
from tests.cluster_support import NodeClient
from tests.hardening_support import control, plugin_env, write_site
from tests.harness import Daemon, ReceiverThread, Site, smoke_config, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

EVENTS = 600
LISTENING = "listening for commands"
# reconnect_max_seconds (1.0 in the test sites), plus the cluster's recovery, plus the few
# attempts the gateway may spend on a survivor that holds a CONNECT 4 s and then closes it.
BACK_WITHIN = 1.0 + LEADER_LOSS_STALL


def event_ids(platform: NodeClient, site: Site) -> set[str]:
    return {str(m.json()["id"]) for m in platform.on(f"{site.root}/events/+")}


def retained(cluster: NatsCluster, node: int, topic: str) -> Any:
    """What a new subscriber on ``node`` gets at once for ``topic``: its retained message.
    (At QoS 0: NATS serves retained messages without creating a JetStream consumer, which it
    can fail to do for a while after losing a node.)"""
    fresh = NodeClient(cluster.nodes[node].mqtt_port, subscribe=topic, qos=0)
    try:
        return fresh.wait(topic, timeout=10)
    finally:
        fresh.close()


@dataclass
class Sent:
    id: str
    at: float
    # whether the daemon was subscribed to its commands, on the node it went to after the kill
    # (the count of its "listening" lines), and stayed connected, from the command's publish
    # to the broker's PUBACK of it
    listening: int
    lost: int  # the daemon's "connection lost" lines by the publish
    steady: bool = False
    answered: bool = False


class Commands:
    """The platform's command sender (its own client: NATS closes a client whose QoS 1 publish
    it cannot store, and the platform's ingest must not go with it): a signed ``ping`` with a
    new id every ``pace`` s, each awaited up to ``patience`` s before the next (a lost one is
    retried with a new id)."""

    def __init__(self, port: int, ingest: NodeClient, site: Site, daemon: Daemon) -> None:
        self.client = NodeClient(port, "platform-cmd")
        self.ingest, self.site, self.daemon = ingest, site, daemon
        self.sent: list[Sent] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _gateway(self) -> tuple[int, int]:
        out = self.daemon.output()
        return out.count(LISTENING), out.count("connection lost")

    def _run(self, pace: float = 1.0, patience: float = 3.0) -> None:
        while not self.stop.is_set():
            cmd = self.site.command(self.site.gateway_id, "ping")
            s = Sent(cmd["id"], time.monotonic(), *self._gateway())
            self.sent.append(s)
            with contextlib.suppress(AssertionError):  # not acknowledged: the gateway was away
                self.client.publish_acked(f"{self.site.root}/cmd", json.dumps(cmd))
                s.steady = self._gateway() == (s.listening, s.lost)
            deadline = time.monotonic() + patience
            while time.monotonic() < deadline and not self.stop.is_set():
                if self.results(s.id):
                    s.answered = True
                    break
                time.sleep(0.02)
            self.stop.wait(max(0.0, s.at + pace - time.monotonic()))

    def results(self, cid: str) -> list[Any]:
        return [
            m.json()
            for m in self.ingest.on(f"{self.site.root}/cmd/result")
            if m.json()["id"] == cid
        ]

    def answers(self, cid: str) -> list[Any]:
        """Its results that answer an execution, a message delivered twice counted once (at
        least once: the platform drops duplicates by id). A command delivered twice (the
        sender sends again what it saw no PUBACK for) gets "replayed" for the copy: proof that
        it did not run twice, not a second answer."""
        unique = {json.dumps(r, sort_keys=True): r for r in self.results(cid)}.values()
        return [r for r in unique if r["code"] != "replayed"]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.client.close()


def test_kill9_the_node_under_the_gateway_loses_no_event_and_answers_each_command_once(
    tmp_path: Path, cluster: NatsCluster
) -> None:
    x = cluster.stream_leader()
    assert x is not None
    y, z = (i for i in range(3) if i != x)
    # The gateway starts on x (the first url); the platform watches from z.
    urls = [cluster.nodes[i].url for i in (x, y, z)]
    log = tmp_path / "emitted"
    receiver = ReceiverThread(tmp_path / "srb433")
    detector = receiver.rx.detector("1A2B0301")
    body = (
        f'[[buses]]\nname = "gen"\ndriver = "burst"\nevents = {EVENTS}\nbatch = 5\n'
        f'interval = 0.05\ndelay = 2.0\nlog = "{log}"\n\n'
    ) + smoke_config(receiver.rx.path, {"smoke-301": "1A2B0301"})
    site = write_site(tmp_path, urls, body, gateway_id="gw-cluster")
    # Subscribed before the daemon starts: events are not retained.
    # A persistent session, as the platform's ingest has: should it lose its connection, the
    # session keeps what arrives meanwhile. It only subscribes (commands go out on another
    # client).
    platform = NodeClient(
        cluster.nodes[z].mqtt_port, "platform-gw", clean_session=False, subscribe=f"{site.root}/#"
    )
    daemon = Daemon(site, env=plugin_env(tmp_path, site))
    daemon.start()
    sock = site.dir / "control.sock"
    commands = Commands(cluster.nodes[z].mqtt_port, platform, site, daemon)
    try:
        assert f"connected to broker 127.0.0.1:{cluster.nodes[x].mqtt_port} (url 1 of 3)" in (
            daemon.output()
        )
        receiver.call(detector.heartbeat(2950, -58))
        receiver.call(detector.alarm(150))
        platform.arrives(f"{site.root}/alarms", lambda a: len(a["active"]) > 0)
        commands.thread.start()
        wait_until(lambda: len(event_ids(platform, site)) >= 100, 15, "events through node x")
        assert len(log.read_text().split()) < EVENTS, "the burst ended before the kill"
        wait_until(lambda: any(s.answered for s in commands.sent), 10, "a command answered")
        listening_before = daemon.output().count(LISTENING)

        cluster.kill(x)
        killed = time.monotonic()
        # The detector's state changes while the gateway is between nodes.
        receiver.call(detector.heartbeat(2610, -71))
        wait_until(
            lambda: "failover: connected to broker" in daemon.output(), BACK_WITHIN, "failover"
        )
        back_s = time.monotonic() - killed
        wait_until(
            lambda: daemon.output().count(LISTENING) > listening_before,
            LEADER_LOSS_STALL + SUBSCRIBE_RETRY_MAX_SECONDS,  # the refusals, then the retry
            "the command subscription on the new node",
        )
        # Commands keep flowing for a while on the new node.
        wait_until(
            lambda: sum(s.listening > listening_before for s in commands.sent) >= 3,
            15,
            "commands sent after the failover",
        )
        wait_until(lambda: len(log.read_text().split()) == EVENTS, 30, "the whole burst emitted")
        wait_until(lambda: control(sock, {"cmd": "status"})["outbox_depth"] == 0, 30, "drained")
        commands.close()

        # No QoS 1 event lost: every emitted id reached the platform on a surviving node.
        order = log.read_text().split()
        wanted = set(order)
        try:
            wait_until(lambda: wanted <= event_ids(platform, site), 20, "every event")
        except AssertionError:
            missing = [n for n, i in enumerate(order) if i not in event_ids(platform, site)]
            raise AssertionError(
                f"{len(missing)} of {EVENTS} events never reached the platform (by order of "
                f"emission: {missing[:20]}); the cluster refused {dict(cluster.refusals())}"
            ) from None

        # One result per command sent while the gateway was subscribed; at most one for those
        # sent while it was away (or in flight at the kill: its node took them along).
        time.sleep(1.0)  # late duplicates, if any, have had time to arrive
        connected = [
            s
            for s in commands.sent
            if (s.at < killed and s.answered) or (s.listening > listening_before and s.steady)
        ]
        away = [s for s in commands.sent if s not in connected]
        after = [s for s in connected if s.at > killed]
        assert len(connected) - len(after) >= 1 and len(after) >= 2, commands.sent
        for s in connected:
            got = commands.answers(s.id)
            assert [r["code"] for r in got] == ["ok"], (s, got)
        for s in away:
            assert len(commands.answers(s.id)) <= 1, (s, commands.results(s.id))

        # The dead node publishes no will (it died with it). A survivor that cannot store the
        # gateway's QoS 1 message in the stall closes its connection, though, and publishes
        # its will then: the platform may see "offline" for a moment. The last word is the
        # gateway's fresh status from the node it ended on.
        statuses = [m.json() for m in platform.on(f"{site.root}/status")]
        assert statuses[-1]["online"] is True, statuses
        offline = sum(not st["online"] for st in statuses)

        # The retained picture, read from both survivors, is the current one.
        now_alarms = [a["id"] for a in control(sock, {"cmd": "alarms"})["alarms"]]
        [dev] = [d for d in control(sock, {"cmd": "status"})["devices"] if d["id"] == "smoke-301"]
        for node in (y, z):
            status = retained(cluster, node, f"{site.root}/status")
            assert status["online"] is True and status["fire_mode"] is True, (node, status)
            alarms = retained(cluster, node, f"{site.root}/alarms")
            assert [a["id"] for a in alarms["active"]] == now_alarms, (node, alarms)
            assert "smoke-301/smoke.alarm" in now_alarms
            state = retained(cluster, node, f"{site.root}/state/smoke-301")
            assert state["battery_mv"] == dev["state"]["battery_mv"] == 2610, (node, state)
        print(
            f"back on a node {back_s:.1f} s after the kill; {len(wanted)} events; "
            f"{len(connected) - len(after)} commands before the kill and {len(after)} after the "
            f"failover while connected, {len(away)} away; {offline} offline status seen"
        )
    finally:
        commands.close()
        if daemon.alive:
            daemon.stop()
        platform.close()
        receiver.close()
        # A clean session ends the persistent one.
        NodeClient(cluster.nodes[z].mqtt_port, "platform-gw").close()


def test_last_will_of_a_killed_daemon_reaches_the_platform_on_the_other_nodes(
    tmp_path: Path, cluster: NatsCluster
) -> None:
    site = write_site(tmp_path, cluster.urls, gateway_id="gw-daemon-killed")
    topic = f"{site.root}/status"
    watchers = [NodeClient(cluster.nodes[n].mqtt_port, subscribe=topic) for n in (1, 2)]
    daemon = Daemon(site)
    daemon.start()
    assert f"connected to broker 127.0.0.1:{cluster.nodes[0].mqtt_port} (url 1 of 3)" in (
        daemon.output()
    )
    for w in watchers:
        w.arrives(topic, lambda s: s["online"] is True)
    daemon.kill()
    for w in watchers:
        assert w.arrives(topic, lambda s: s["online"] is False)["online"] is False
        w.close()
    assert retained(cluster, 2, topic)["online"] is False
