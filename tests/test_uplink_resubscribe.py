"""A broker that refuses the gateway's command subscription (SUBACK 0x80) must not leave it
connected but deaf: the link asks again, with backoff, for as long as the session lasts.

A clustered NATS does this for seconds after losing a node (it cannot create the subscription's
JetStream consumer in time: tests/test_cluster_gateway.py). Here a single real nats-server does
it deterministically: its permissions first deny the subscription, then, reloaded (SIGHUP),
allow it, on the same connection. (mosquitto 2.0 grants a denied MQTT 3.1.1 subscription and
filters silently, so it cannot show this.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_stubs.nats_cluster import NatsCluster
from tests.cluster_support import NodeClient
from tests.harness import Daemon, make_site, wait_until

pytestmark = pytest.mark.timeout(90)


def permissions(deny: str) -> str:
    """Every client is user ``gw``, denied subscribing to ``deny`` (a subject). (Publishing
    allowed explicitly: nats-server 2.9.10 dereferences a user's publish permissions to check
    the retained messages on a reload, and panics when they are unset.)"""
    return (
        "authorization { users: [ {user: gw, password: pw, permissions: { "
        f'publish: {{ allow: [">"] }}, subscribe: {{ deny: ["{deny}"] }} }} }} ] }}\n'
        "no_auth_user: gw\n"
    )


def test_a_refused_command_subscription_is_asked_again_until_granted(tmp_path: Path) -> None:
    server = NatsCluster(tmp_path / "nats", size=1, extra_conf=permissions("pingan.v1.gw-test.cmd"))
    server.start()
    site = make_site(tmp_path, server.urls[0])
    daemon = Daemon(site)
    daemon.start(wait_ready=False)
    try:
        wait_until(
            lambda: daemon.output().count("broker refused the subscription") >= 2,
            15,
            "the refused subscription asked again",
        )
        assert "listening for commands" not in daemon.output()
        server.reload(permissions("nothing.here"))
        # Backoff from 1 s, doubling, jittered: granted within a few tries.
        wait_until(lambda: "listening for commands" in daemon.output(), 15, "the subscription")
        platform = NodeClient(server.nodes[0].mqtt_port, subscribe=f"{site.root}/cmd/result")
        cmd = site.command(site.gateway_id, "ping")
        platform.publish(f"{site.root}/cmd", json.dumps(cmd)).wait_for_publish(10)
        result = platform.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], 10)
        assert result["code"] == "ok"
        assert daemon.output().count("connected to broker") == 1, "it reconnected instead"
        platform.close()
    finally:
        daemon.stop()
        server.stop()
