"""How often the 3-node NATS cluster refuses MQTT sessions, and how long losing a leader stalls
them: ``python -m bench.cluster_refusals [--runs 10] [--clients 30]`` (opt-in, not in
``make bench``: about 30 s a run).

Each run, on a fresh cluster (firmware_stubs/nats_cluster.py):

1. start: the time until every node accepts an MQTT session;
2. no kill: ``--clients`` persistent sessions (clean_session false, as the platform's are)
   connect at once, spread over the nodes, each subscribes at QoS 1 and publishes one QoS 1
   message; the sessions the nodes refused are counted from their logs, by reason;
3. leader loss: the node leading the sessions' stream (``$MQTT_sess``) is killed -9; the stall
   is the time until both survivors accept a new session again (a CONNECT every 0.25 s);
4. the node is restarted and must accept sessions again (rejoin time).

Refusals are read from the nodes' own logs ("unable to connect: ..."), so a refusal a client
retried through is counted too. Results: bench/results/cluster_refusals.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import REPO
from firmware_stubs.nats_cluster import NatsCluster, mqtt_connack

RESULTS = REPO / "bench" / "results" / "cluster_refusals.json"


def storm(cluster: NatsCluster, clients: int, run: int, within: float = 60.0) -> dict[str, Any]:
    """``clients`` persistent sessions at once; how many came up, subscribed and had their
    message acknowledged within ``within`` s, and the slowest."""
    done = threading.Semaphore(0)
    took: list[float] = []
    lock = threading.Lock()
    made: list[mqtt.Client] = []
    t0 = time.monotonic()
    for k in range(clients):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"r{run}-c{k}", clean_session=False)
        c.reconnect_delay_set(1, 1)
        topic = f"bench/r{run}/c{k}"

        def on_connect(cl: Any, u: Any, f: Any, rc: Any, p: Any, topic: str = topic) -> None:
            if not rc.is_failure:
                cl.subscribe(topic, qos=1)

        def on_subscribe(cl: Any, *_a: Any, topic: str = topic) -> None:
            cl.publish(topic, b"x", qos=1)

        def on_publish(*_a: Any) -> None:
            with lock:
                took.append(time.monotonic() - t0)
            done.release()

        c.on_connect, c.on_subscribe, c.on_publish = on_connect, on_subscribe, on_publish
        c.connect_async("127.0.0.1", cluster.nodes[k % len(cluster.nodes)].mqtt_port)
        c.loop_start()
        made.append(c)
    deadline = t0 + within
    ok = sum(done.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in range(clients))
    for c in made:
        c.disconnect()
        c.loop_stop()
    return {"ok": ok, "slowest_s": round(max(took, default=float("nan")), 2)}


def stall(cluster: NatsCluster, survivors: list[int], t_kill: float, limit: float = 60) -> Any:
    """Seconds from the kill until a new session is accepted on every survivor: the start of
    the first accepted CONNECT, CONNECTs starting every 0.25 s on each (a refused one is held
    4 s by NATS before it closes, so sequential attempts would round the stall up to 4 s)."""
    first_ok: dict[int, float] = {}
    lock = threading.Lock()

    def attempt(i: int, started: float) -> None:
        if mqtt_connack(cluster.nodes[i].mqtt_port, 10) == 0:
            with lock:
                first_ok[i] = min(first_ok.get(i, started), started)

    threads = []
    while time.monotonic() - t_kill < limit:
        with lock:
            pending = [i for i in survivors if i not in first_ok]
        if not pending:
            break
        for i in pending:
            t = threading.Thread(target=attempt, args=(i, time.monotonic() - t_kill))
            t.start()
            threads.append(t)
        time.sleep(0.25)
    for t in threads:
        t.join()
    return round(max(first_ok.values()), 2) if len(first_ok) == len(survivors) else None


def one_run(run: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nats-refusals-") as tmp:
        cluster = NatsCluster(Path(tmp))
        t0 = time.monotonic()
        try:
            cluster.start()
        except RuntimeError as exc:  # the cluster itself failed: say so, from its logs
            cluster.stop()
            return {"run": run, "failed": str(exc)[:2000]}
        result: dict[str, Any] = {"run": run, "ready_s": round(time.monotonic() - t0, 2)}
        result["refused_at_start"] = dict(cluster.refusals())
        before = cluster.refusals()
        result["storm"] = storm(cluster, clients, run)
        result["refused_no_kill"] = dict(cluster.refusals() - before)
        leader = cluster.stream_leader()
        assert leader is not None
        survivors = [i for i in range(len(cluster.nodes)) if i != leader]
        before = cluster.refusals()
        cluster.kill(leader)
        t_kill = time.monotonic()
        result["stall_s"] = stall(cluster, survivors, t_kill)
        result["refused_after_kill"] = dict(cluster.refusals() - before)
        t0 = time.monotonic()
        cluster.restart(leader)
        result["rejoin_s"] = round(time.monotonic() - t0, 2)
        cluster.stop()
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--clients", type=int, default=30)
    args = ap.parse_args()
    runs = []
    for run in range(args.runs):
        r = one_run(run, args.clients)
        r["load"] = round(os.getloadavg()[0], 1)
        print(json.dumps(r), flush=True)
        runs.append(r)
    total: Counter[str] = Counter()
    for r in runs:
        for key in ("refused_at_start", "refused_no_kill", "refused_after_kill"):
            total.update({f"{key}.{why}": n for why, n in r.get(key, {}).items()})
    stalls = sorted(r["stall_s"] for r in runs if r.get("stall_s") is not None)
    summary = {
        "runs": len(runs),
        "clients": args.clients,
        "cluster_failed": sum("failed" in r for r in runs),
        "storm_sessions_ok": sum(r.get("storm", {}).get("ok", 0) for r in runs),
        "runs_with_refusal_no_kill": sum(bool(r.get("refused_no_kill")) for r in runs),
        "refusals": dict(total),
        "stall_s_min_median_max": [stalls[0], stalls[len(stalls) // 2], stalls[-1]]
        if stalls
        else None,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
