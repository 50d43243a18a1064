"""The fleet simulator (bench/fleet.py) on the 3-node NATS cluster, end to end with a few houses:
what ``bench/bench_fleet_cluster.py`` measures at scale must first work at all.

Houses are spread round-robin over the nodes; the platform (ingest and command sender) is on
node 0, so everything it counts from houses on nodes 1 and 2 crossed the cluster's routes, and
every command it sends goes to a house on another node and its result comes back."""

from __future__ import annotations

import time

import pytest

from bench.fleet_run import Fleet
from firmware_stubs.nats_cluster import NatsCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

HOUSES = 6  # two on each node


def test_fleet_events_reach_the_platform_on_another_node_and_commands_get_one_result_each(
    cluster: NatsCluster,
) -> None:
    with Fleet(
        cluster.mqtt_ports, cluster.pids(), HOUSES, procs=2, platform_node=0, commands_per_s=4
    ) as fleet:
        fleet.start()
        fleet.access()  # every house's door used: unlocked, opened, closed, locked
        time.sleep(2.0)  # the window: about 8 commands, in turn to the four houses elsewhere
        r = fleet.stop()

    assert r["connected"] == HOUSES, r
    assert r["disconnects"] == 0 and r["failed"] == 0, r
    # Four door events from each house, the two on each other node included (an hourly
    # smoke heartbeat may add one now and then): at least once, each id counted once.
    assert r["event_ids"] >= 4 * HOUSES, r
    assert r["events_published"] >= 4 * HOUSES and r["events_lost"] == 0, r
    assert all(n >= 8 for n in r["events_from_node"]), r["events_from_node"]
    assert r["delivered_ratio"] >= 0.99, r
    cmds = r["commands"]
    assert cmds["sent"] >= 2, cmds
    assert cmds["answered"] == cmds["sent"] and cmds["duplicates"] == 0, cmds
    assert cmds["codes"] == {"ok": cmds["sent"]}, cmds
    on_node = cmds["answered_from"]
    assert on_node[0] == 0 and on_node[1] > 0 and on_node[2] > 0, on_node
