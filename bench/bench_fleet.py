"""Township scale on one machine: how many simulated houses one mosquitto carries.

Runs a real mosquitto on loopback, the platform's subscriber (``pingan/v1/#``, QoS 1) and the
fleet (``bench/fleet.py``) in worker processes; steps N up until a step is not sustained, and
reports the largest N sustained, the broker's CPU (from /proc/<pid>/stat) and the fleet's RSS
per house there, and how long N houses take to connect and publish their retained state (a
township-wide power return).

Sustained: as ``bench/fleet_run.py`` says (every house connected throughout, every QoS 1
message acknowledged, >= 99 % delivered, p99 <= 1 s, the broker below 90 % of its one core).
``bench/bench_fleet_cluster.py`` runs the same fleet on a 3-node cluster, beside this.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import row
from bench.fleet_run import measure, rounded
from firmware_stubs.broker import Broker


@contextmanager
def mosquitto() -> Iterator[tuple[list[int], dict[str, int]]]:
    """One real mosquitto on loopback: its port and its process, as ``Fleet`` takes them."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), extra_conf="max_queued_messages 100000\n")
        broker.start()
        assert broker.proc is not None
        try:
            yield [broker.port], {"mosquitto": broker.proc.pid}
        finally:
            broker.stop()


def run_fleet(houses: int, seconds: float, speed: float = 1.0, **kw: Any) -> dict[str, Any]:
    with mosquitto() as (ports, pids):
        return measure(ports, pids, houses, seconds, speed=speed, **kw)


def run(quick: bool) -> list[dict[str, Any]]:
    steps = [50] if quick else [500, 1000, 2000, 4000, 8000]
    seconds = 8.0 if quick else 30.0
    budget = time.monotonic() + (50 if quick else 540)
    results = []
    for n in steps:
        if time.monotonic() + 2.5 * seconds > budget:
            break
        r = run_fleet(n, seconds)
        print(
            f"  fleet N={n}: " + rounded(r),
            flush=True,
        )
        results.append(r)
        if not r["sustained"]:
            break
    ok = [r for r in results if r["sustained"]]
    best = ok[-1] if ok else results[-1]
    n = best["houses"]
    target = 50 if quick else 1000
    stress = None
    if not quick and time.monotonic() + 2.5 * seconds < budget:
        # Every port of every house busy and polled ten times as often: the broker's headroom.
        stress = run_fleet(1000, seconds, speed=10.0)
        print("  fleet N=1000 at 10x rates: " + json.dumps(stress), flush=True)
    rows = [
        row(f"fleet: largest N sustained ({'quick: one step' if quick else 'steps ' + '/'.join(map(str, steps[: len(results)]))})",
            n if ok else 0, "houses", target=f">= {target}", ok=bool(ok) and n >= target),
        row(f"fleet: broker CPU at N={n}", 100 * best["broker_cpu"], "% of a core", target="< 90 %", ok=best["broker_cpu"] < 0.9),
        row(f"fleet: messages/s published at N={n} (x2 through the broker)", best["published_per_s"], "msg/s"),
        row(f"fleet: event/telemetry latency p99 at N={n}", 1000 * (best["latency_p99_s"] or 0), "ms", target="<= 1000 ms", ok=(best["latency_p99_s"] or 0) <= 1.0),
        row(f"fleet: RSS per simulated house at N={n}", best["rss_per_house_kb"], "KB"),
        row(f"fleet: connect + retained state, N={n} houses at once", best["connect_seconds"], "s"),
        row(f"fleet: broker RSS per connected house at N={n}", 1024 * best["broker_rss_mb"] / n, "KB"),
    ]  # fmt: skip
    if stress is not None:
        rows.append(
            row(
                "fleet: broker CPU at N=1000 with 10x message rates",
                100 * stress["broker_cpu"],
                "% of a core",
                target="< 90 %",
                ok=stress["sustained"],
            )
        )
    return rows
