"""Township scale on one machine: how many simulated houses one mosquitto carries.

Runs a real mosquitto on loopback, the platform's subscriber (``pingan/v1/#``, QoS 1) and the
fleet (``bench/fleet.py``) in worker processes; steps N up until a step is not sustained, and
reports the largest N sustained, the broker's CPU (from /proc/<pid>/stat) and the fleet's RSS
per house there, and how long N houses take to connect and publish their retained state (a
township-wide power return).

Sustained means: every house connected for the whole window, no publish refused, every QoS 1
message acknowledged, the subscriber received >= 99 % of what was published, event/telemetry
latency p99 <= 1 s, and the broker below 90 % of one core (mosquitto uses one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from bench.common import REPO, row, rss_mb
from firmware_stubs.broker import Broker

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class Proc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", *args], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def line(self, timeout: float) -> dict[str, Any]:
        out: IO[str] = self.p.stdout  # type: ignore[assignment]
        import select

        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer from {self.p.args} within {timeout} s")
        text = out.readline()
        if not text:
            raise RuntimeError(f"{self.p.args} ended: {self.p.wait()}")
        return dict(json.loads(text))

    def send(self, cmd: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait(10)


def run_fleet(houses: int, seconds: float, procs: int = 2, speed: float = 1.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), extra_conf="max_queued_messages 100000\n")
        broker.start()
        assert broker.proc is not None
        started: list[Proc] = []
        try:
            sub = Proc("subscriber", str(broker.port))
            started.append(sub)
            sub.line(20)
            t0 = time.monotonic()
            per = -(-houses // procs)
            workers = [
                Proc(
                    "worker",
                    str(broker.port),
                    str(i * per),
                    str(min(per, houses - i * per)),
                    str(speed),
                )
                for i in range(procs)
                if houses - i * per > 0
            ]
            started += workers
            for w in workers:
                w.line(180)
            connect_seconds = time.monotonic() - t0
            time.sleep(1.0)  # the retained burst drains
            cpu0, w0 = cpu_seconds(broker.proc.pid), time.monotonic()
            for p in started:
                p.send("start")
            time.sleep(seconds)
            broker_cpu = (cpu_seconds(broker.proc.pid) - cpu0) / (time.monotonic() - w0)
            broker_rss = rss_mb(broker.proc.pid)
            for w in workers:
                w.send("stop")
            reports = [w.line(30) for w in workers]
            sub.send("stop")
            seen = sub.line(30)
        finally:
            for p in started:
                p.close()
            broker.stop()
    published = sum(r["qos0"] + r["qos1"] for r in reports)
    received = sum(seen["received"].values())
    rss = sum(r["rss_kb"] for r in reports)
    base = sum(r["base_rss_kb"] for r in reports)
    result = {
        "houses": houses,
        "connected": sum(r["connected"] for r in reports),
        "disconnects": sum(r["disconnects"] for r in reports),
        "failed": sum(r["failed"] for r in reports),
        "published_per_s": published / seconds,
        "qos1_unacked": sum(r["unacked"] for r in reports),  # in flight at "stop"
        "delivered_ratio": received / published if published else 1.0,
        "latency_p99_s": seen["latency"]["p99"],
        "latency_p50_s": seen["latency"]["p50"],
        "broker_cpu": broker_cpu,
        "broker_rss_mb": broker_rss,
        "fleet_rss_mb": rss / 1024,
        "rss_per_house_kb": (rss - base) / houses,
        "connect_seconds": connect_seconds,
    }
    result["sustained"] = bool(
        result["connected"] == houses
        and not result["disconnects"]
        and not result["failed"]
        and result["qos1_unacked"] <= houses  # a few in flight at the instant of "stop"
        and result["delivered_ratio"] >= 0.99
        and (result["latency_p99_s"] or 0) <= 1.0
        and broker_cpu < 0.9
    )
    return result


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
            f"  fleet N={n}: "
            + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}),
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
