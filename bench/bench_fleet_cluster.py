"""The fleet on the 3-node NATS cluster (issue 18), beside one mosquitto in the same run.

Opt-in (not in the default ``make bench``: 10-30 min): ``.venv/bin/python -m
bench.bench_fleet_cluster [--quick]`` prints the rows and writes
``bench/results/fleet_cluster.json``.

1. **Steps**: N = 500, 1,000, 2,000, 4,000, 10,000 houses until a step is not sustained
   (``bench/fleet_run.py`` says what that means) or the budget ends. Each step on a fresh
   cluster (``firmware_stubs/nats_cluster.py``): houses round-robin over the three nodes, each
   failing over to the next as the gateway does; the platform on a node that does not lead the
   sessions' stream, sending signed commands (N/1,000 a second, at least 2) to houses whose
   node is another one; a 30 s window: per-node CPU (``/proc/<pid>/stat``) and RSS per house,
   p99 event/telemetry latency at the platform, sessions and subscriptions refused (the
   houses' count, and the nodes' own logs by reason). Then the same N on one mosquitto.
2. **A node killed under 1,000 houses** (run first): on a fresh cluster, 10 s into a window,
   kill -9 the node leading the sessions' stream (the worst one; 1/3 of the houses); the time
   until every house that lost its session is connected to a survivor, its ``cmd``
   subscription granted and the backlog it came back with acknowledged.
   ``--kill-only --all-on-victim``: only this, with every house starting on the node killed
   (all 1,000 fail over at once; results in ``bench/results/fleet_cluster_kill.json``).

What limits it on this 2-core machine is told by the CPU of the cluster, the fleet, the
platform and the whole machine, all recorded with each step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_fleet import run_fleet
from bench.common import REPO, row
from bench.fleet import first_node
from bench.fleet_run import Fleet, rounded
from firmware_stubs.nats_cluster import NatsCluster

RESULTS = REPO / "bench" / "results" / "fleet_cluster.json"
KILL_RESULTS = REPO / "bench" / "results" / "fleet_cluster_kill.json"
STEPS = [500, 1000, 2000, 4000, 10000]


def commands_per_s(houses: int) -> float:
    return max(2.0, houses / 1000)


class Cluster:
    """A fresh 3-node cluster for one measurement; the platform's node is one that does not
    lead the MQTT sessions' stream (that one is the node to kill)."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="fleet-cluster-")
        self.c = NatsCluster(Path(self.tmp.name))

    def __enter__(self) -> Cluster:
        self.c.start()
        leader = self.c.stream_leader()
        self.led = leader is not None  # else: no leader seen, node 0 stands in
        self.leader = 0 if leader is None else leader
        self.platform = (self.leader + 1) % len(self.c.nodes)
        return self

    def __exit__(self, *exc: object) -> None:
        self.c.stop()
        self.tmp.cleanup()

    def fleet(self, houses: int, home: int = -1) -> Fleet:
        """``houses`` round-robin over the nodes (or all on node ``home``), the platform on
        its node."""
        return Fleet(
            self.c.mqtt_ports,
            self.c.pids(),
            houses,
            platform_node=self.platform,
            commands_per_s=commands_per_s(houses),
            home=home,
        )

    def refusals(self) -> dict[str, int]:
        return dict(self.c.refusals())


def cluster_step(houses: int, seconds: float) -> dict[str, Any]:
    with Cluster() as cl:
        try:
            with cl.fleet(houses) as fleet:
                refused_at_connect = cl.refusals()
                fleet.start()
                time.sleep(seconds)
                r = fleet.stop()
        except (TimeoutError, RuntimeError) as exc:
            return {"houses": houses, "sustained": False, "error": str(exc)[:300],
                    "node_refusals": cl.refusals()}  # fmt: skip
        r["node_refusals_connect"] = refused_at_connect
        r["node_refusals"] = cl.refusals()
        r["platform_node"] = cl.c.nodes[cl.platform].name
        r["node_rss_per_house_kb"] = {n: 1024 * mb / houses for n, mb in r["node_rss_mb"].items()}
        return r


def kill_step(
    houses: int, before: float = 10.0, after: float = 5.0, all_on_victim: bool = False
) -> dict[str, Any]:
    with Cluster() as cl:
        home = cl.leader if all_on_victim else -1
        with cl.fleet(houses, home) as fleet:
            fleet.start()
            time.sleep(before)
            refused = cl.refusals()
            victim = cl.c.nodes[cl.leader]
            since = time.time()
            cl.c.kill(cl.leader)
            fleet.pids.pop(victim.name)  # the window's CPU figures are the survivors'
            back = fleet.watch(since, victim.mqtt_port)
            refused_after = {k: v - refused.get(k, 0) for k, v in cl.refusals().items()}
            time.sleep(after)
            r = fleet.stop()
        nodes = len(cl.c.nodes)
        on_victim = sum(1 for i in range(houses) if first_node(i, nodes, home) == cl.leader)
        return {
            "houses": houses,
            "killed": victim.name,
            "killed_led_sessions": cl.led,
            "platform_node": cl.c.nodes[cl.platform].name,
            "houses_on_killed_node": on_victim,
            **back,
            "node_refusals_after_kill": refused_after,
            "window": r,
        }


def run(quick: bool, budget_s: float | None = None) -> list[dict[str, Any]]:
    steps = [100] if quick else STEPS
    seconds = 8.0 if quick else 30.0
    budget = time.monotonic() + (budget_s or (300 if quick else 1800))
    # The kill first: its figure must not depend on how far the steps get in the budget.
    kill = kill_step(100 if quick else 1000)
    print("  fleet_cluster kill: " + rounded(kill), flush=True)
    steps_done: list[dict[str, Any]] = []
    for n in steps:
        if steps_done and time.monotonic() + 8 * seconds > budget:
            break
        r = cluster_step(n, seconds)
        print(f"  fleet_cluster N={n}: " + rounded(r), flush=True)
        base = run_fleet(n, seconds, commands_per_s=commands_per_s(n))
        print(f"  fleet (one mosquitto) N={n}: " + rounded(base), flush=True)
        steps_done.append({"cluster": r, "mosquitto": base})
        if not r["sustained"]:
            break
    RESULTS.parent.mkdir(exist_ok=True)
    record = {"when": time.strftime("%Y-%m-%d %H:%M"), "quick": quick, "seconds": seconds}
    record |= {"steps": steps_done, "kill": kill}
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    return rows(steps_done, kill)


def rows(steps: list[dict[str, Any]], kill: dict[str, Any]) -> list[dict[str, Any]]:
    ok = [s for s in steps if s["cluster"]["sustained"]]
    best = (ok or steps)[-1]
    c, m = best["cluster"], best["mosquitto"]
    n = c["houses"]
    tried = "/".join(str(s["cluster"]["houses"]) for s in steps)
    out = [row(f"fleet_cluster: largest N sustained on 3 NATS nodes (steps {tried})",
               n if ok else 0, "houses", baseline="one mosquitto, same N",
               baseline_value=n if m["sustained"] else 0, target="up to 10,000")]  # fmt: skip
    if "node_cpu" in c:
        nodes = ", ".join(f"{k} {100 * v:.0f} %" for k, v in c["node_cpu"].items())
        rss = max(c["node_rss_per_house_kb"].values())
        out += [
            row(f"fleet_cluster: busiest node's CPU at N={n} ({nodes})",
                100 * max(c["node_cpu"].values()), "% of a core",
                baseline="mosquitto", baseline_value=100 * m["broker_cpu"], target="< 90 %"),
            row(f"fleet_cluster: largest node RSS per house at N={n}", rss, "KB",
                baseline="mosquitto", baseline_value=1024 * m["broker_rss_mb"] / n),
            row(f"fleet_cluster: event/telemetry latency p99 at N={n}",
                1000 * (c["latency_p99_s"] or 0), "ms", baseline="mosquitto",
                baseline_value=1000 * (m["latency_p99_s"] or 0), target="<= 1000 ms"),
            row(f"fleet_cluster: command → result p99 at N={n}, other node",
                1000 * (c["commands"]["p99"] or 0), "ms", baseline="mosquitto",
                baseline_value=1000 * (m["commands"]["p99"] or 0)),
            row(f"fleet_cluster: connect + subscribe + retained state, N={n} at once",
                c["connect_seconds"], "s", baseline="mosquitto",
                baseline_value=m["connect_seconds"]),
        ]  # fmt: skip
    w = kill["window"]
    who = f"{kill['moved']} of {kill['houses']} houses after kill -9 of {kill['killed']}"
    out += [
        row(f"fleet_cluster: {who}: all back on a survivor, backlogs acknowledged",
            kill["drained_s"], "s", baseline="reconnected", baseline_value=kill["back_s"]),
        row(f"fleet_cluster: {who}: the median house back and drained", kill["drained_p50_s"] or 0,
            "s", baseline="reconnected", baseline_value=kill["back_p50_s"]),
        row(f"fleet_cluster: {who}: events lost (by id) of {w['events_published']} published "
            "in the window", w["events_lost"], "events", target="0", ok=not w["events_lost"]),
        row(f"fleet_cluster: {who}: all cmd subscriptions granted again", kill["subscribed_s"],
            "s", baseline="reconnected", baseline_value=kill["back_s"]),
    ]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 houses, one step")
    ap.add_argument("--budget", type=float, help="seconds for it all (default 1800)")
    ap.add_argument("--kill-only", action="store_true", help="only the node kill (step 2)")
    ap.add_argument("--houses", type=int, default=1000, help="houses for the kill (1,000)")
    ap.add_argument(
        "--all-on-victim", action="store_true", help="every house starts on the node killed"
    )
    args = ap.parse_args()
    if args.kill_only:
        kill = kill_step(args.houses, all_on_victim=args.all_on_victim)
        record = {"when": time.strftime("%Y-%m-%d %H:%M"), "all_on_victim": args.all_on_victim}
        KILL_RESULTS.write_text(json.dumps(record | {"kill": kill}, indent=1) + "\n")
        print("  fleet_cluster kill: " + rounded(kill), flush=True)
        return
    for r in run(args.quick, args.budget):
        print(f"  {r['name']}: {r['value']} {r['unit']}  ({r['baseline']}: {r['baseline_value']})")


if __name__ == "__main__":
    main()
