"""The 3-node NATS cluster as a broker, with plain MQTT clients (no gateway): what the gateway
and the platform rely on must cross nodes and outlive one of them.

Each kill is aimed at the worst node: the leader of the JetStream stream that holds what the
test is about, so the survivors must elect another before they serve it (the cluster's own
recovery, allowed for by NodeClient's bounded waits, not by sleeps)."""

from __future__ import annotations

import json
import threading

import pytest

from firmware_stubs.nats_cluster import ACK_WAIT, LEADER_LOSS_STALL, NatsCluster
from tests.cluster_support import NodeClient
from tests.harness import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def others(cluster: NatsCluster, i: int) -> list[int]:
    return [j for j in range(len(cluster.nodes)) if j != i]


def test_retained_status_crosses_nodes_and_outlives_the_node_it_was_published_on(
    cluster: NatsCluster,
) -> None:
    a = cluster.stream_leader("$MQTT_rmsgs")
    assert a is not None
    b, c = others(cluster, a)
    topic = "pingan/v1/gw-ret/status"
    pub = NodeClient(cluster.nodes[a].mqtt_port, "gw-ret")
    for online in (True, False, True):  # the last one is the current picture
        body = json.dumps({"online": online, "n": int(online) + 1}).encode()
        pub.publish_acked(topic, body, retain=True)
    current = {"online": True, "n": 2}

    for node in (b, c):
        sub = NodeClient(cluster.nodes[node].mqtt_port, subscribe=topic)
        got = sub.wait(topic, timeout=10)
        assert got == current, f"node {node} served {got}"
        assert [m.retain for m in sub.on(topic)] == [True], "one retained copy, not history"
        sub.close()

    cluster.kill(a)  # the node it was published on, and the retained stream's leader
    # At QoS 0: with a node down, NATS may take longer than its 4 s to create the JetStream
    # consumer a QoS 1 subscription needs, again and again on a loaded machine; retained
    # messages need none.
    late = NodeClient(cluster.nodes[b].mqtt_port, subscribe=topic, qos=0)
    assert late.wait(topic, timeout=10) == current
    late.close()


def test_last_will_of_a_client_that_vanishes_reaches_subscribers_on_the_other_nodes(
    cluster: NatsCluster,
) -> None:
    a, b, c = range(3)
    topic = "pingan/v1/+/status"
    # Readers of the status at QoS 0, as docs/monitoring.md advises for the retained picture:
    # no JetStream consumer between them and the will. (At QoS 1, twice in full runs a
    # watcher's subscription was granted and then delivered nothing at all.)
    watchers = [NodeClient(cluster.nodes[n].mqtt_port, subscribe=topic, qos=0) for n in (b, c)]
    offline = json.dumps({"online": False}).encode()
    # A control: a client that says goodbye (DISCONNECT) must leave no will behind.
    polite = NodeClient(
        cluster.nodes[a].mqtt_port, "gw-polite", will=("pingan/v1/gw-polite/status", offline)
    )
    polite.close()
    dying = NodeClient(
        cluster.nodes[a].mqtt_port, "gw-dies", will=("pingan/v1/gw-dies/status", offline)
    )
    dying.publish_acked("pingan/v1/gw-dies/status", b'{"online": true}', retain=True)
    for w in watchers:
        w.arrives("pingan/v1/gw-dies/status", lambda body: body["online"])

    dying.die()
    for w in watchers:
        # The broker notices the dead connection at once (the socket closed); the will then
        # crosses the routes to the other nodes.
        offline_seen = w.arrives("pingan/v1/gw-dies/status", lambda b: not b["online"])
        assert offline_seen == {"online": False}
        assert w.on("pingan/v1/gw-polite/status") == [], "a clean DISCONNECT published its will"
        w.close()
    # And it stays as the gateway's retained status, read from the third node.
    late = NodeClient(cluster.nodes[c].mqtt_port, subscribe="pingan/v1/gw-dies/status", qos=0)
    assert late.wait("pingan/v1/gw-dies/status", timeout=10) == {"online": False}
    late.close()


def test_qos1_messages_for_a_subscriber_survive_the_kill_of_its_node(
    cluster: NatsCluster,
) -> None:
    """The platform's persistent session (clean_session false) on the node leading the
    sessions' stream; the node is killed -9 while a gateway publishes; the platform resumes on
    a third node and gets every message its session was owed, those published while it was
    away included."""
    x = cluster.stream_leader()
    assert x is not None
    y, z = others(cluster, x)
    topic = "pingan/v1/gw-q1/events/smoke-301"
    platform = NodeClient(
        cluster.nodes[x].mqtt_port, "platform-q1", clean_session=False, subscribe=topic
    )
    gateway = NodeClient(cluster.nodes[y].mqtt_port, "gw-q1")
    acked: list[str] = []

    def send(ids: range) -> None:
        for n in ids:
            gateway.publish_acked(topic, json.dumps({"id": f"e{n}"}))
            acked.append(f"e{n}")

    send(range(100))
    # The platform stops reading (a busy process): what is delivered from now on is in flight,
    # unacknowledged, when its node dies, and must come again (after ACK_WAIT) on another node.
    platform.client.loop_stop()
    send(range(100, 120))
    # The kill lands while the gateway keeps publishing: nothing is paused for it.
    sender = threading.Thread(target=send, args=(range(120, 200),))
    sender.start()
    cluster.kill(x)
    sender.join(2 * LEADER_LOSS_STALL)
    assert not sender.is_alive()

    back = NodeClient(
        cluster.nodes[z].mqtt_port, "platform-q1", clean_session=False, within=LEADER_LOSS_STALL
    )
    assert back.session_present, "the session did not survive its node"
    send(range(200, 250))
    assert len(acked) == 250

    def received() -> set[str]:
        return {m.json()["id"] for m in platform.on(topic) + back.on(topic)}

    # The resumed session's consumer may have lost its leader with the node: delivery resumes
    # once the survivors elect another (the same recovery as above); what was in flight to the
    # dead node comes again after ACK_WAIT.
    try:
        wait_until(lambda: received() >= set(acked), ACK_WAIT + LEADER_LOSS_STALL, "every event")
    except AssertionError:
        missing = sorted(set(acked) - received(), key=lambda i: int(i[1:]))
        raise AssertionError(
            f"{len(missing)} of {len(acked)} acknowledged events never reached the platform: "
            f"{missing[:20]}; the cluster refused {dict(cluster.refusals())}"
        ) from None
    assert received() == set(acked)
    back.close()
    platform.close()  # its loop stopped, its node dead: only sockets to let go
    gateway.close()
    # A clean session ends the persistent one, so the module's next test starts without it.
    NodeClient(cluster.nodes[z].mqtt_port, "platform-q1").close()


@pytest.mark.parametrize("topic", ["pingan/v1/gw.1/status", "pingan/v1/gw 1/status"])
def test_a_dot_or_a_space_in_a_topic_costs_the_client_its_connection(
    cluster: NatsCluster, topic: str
) -> None:
    """Why the contract limits ids and the prefix to [A-Za-z0-9_-]: NATS maps MQTT levels to
    subject tokens, where ``.`` separates tokens and a space ends the subject."""
    client = NodeClient(cluster.nodes[0].mqtt_port)
    ok = "pingan/v1/gw-1/status"
    client.publish_acked(ok, b"{}")
    assert client.disconnects == 0
    client.publish(topic, b"{}", qos=1)
    wait_until(lambda: client.disconnects > 0, 10, f"NATS to close the connection over {topic!r}")
    client.close()
