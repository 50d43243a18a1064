"""Running the fleet simulator (``bench/fleet.py``) against a broker's nodes: its processes, the
measurement window, CPU and memory from /proc, and what "sustained" means. Shared by
``bench_fleet`` (one mosquitto) and ``bench_fleet_cluster`` (the 3-node NATS cluster).

Sustained means: every house connected for the whole window, no publish refused, every QoS 1
message acknowledged, no event lost (by id), the platform received >= 99 % of what was
published, event/telemetry latency p99 <= 1 s, every command answered exactly once, and no
broker node above 90 % of one core (mosquitto uses one).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import IO, Any

from bench.common import REPO, rss_mb

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


class Proc:
    """A ``python -m bench.fleet`` process spoken to over its stdin and stdout."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", *args], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def line(self, timeout: float) -> dict[str, Any]:
        out: IO[str] = self.p.stdout  # type: ignore[assignment]
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
        for pipe in (self.p.stdin, self.p.stdout):
            if pipe is not None:
                pipe.close()


class Fleet:
    """N houses over the broker nodes ``ports`` (processes ``pids``, by node name), the platform
    on node ``platform_node`` sending ``commands_per_s`` commands to houses on other nodes.
    Houses start round robin over the nodes, or all on node ``home`` if it is given.

    ``open()`` until every house is connected and subscribed, ``start()`` the window,
    ``stop()`` it: the result."""

    def __init__(
        self,
        ports: list[int],
        pids: dict[str, int],
        houses: int,
        procs: int = 2,
        speed: float = 1.0,
        platform_node: int = 0,
        commands_per_s: float = 0.0,
        home: int = -1,
    ) -> None:
        self.ports, self.pids, self.houses = ports, pids, houses
        self.procs, self.speed = procs, speed
        self.platform_node, self.rate, self.home = platform_node, commands_per_s, home
        self.started: list[Proc] = []
        self.workers: list[Proc] = []
        self.connect_seconds = 0.0
        self.connect_refused = 0
        self.marks: dict[str, Any] = {}

    def open(self) -> None:
        # Connecting and subscribing N houses: seconds on mosquitto, much longer on a cluster
        # that stores every session and makes a consumer per subscription.
        timeout = 120 + self.houses / 10
        nodes = len(self.ports)
        self.platform = Proc(
            "platform", str(self.ports[self.platform_node]), str(self.houses), str(nodes),
            str(self.platform_node), str(self.rate), str(self.home),
        )  # fmt: skip
        self.started.append(self.platform)
        self.platform.line(90)
        t0 = time.monotonic()
        per = -(-self.houses // self.procs)
        ports = ",".join(map(str, self.ports))
        for i in range(self.procs):
            if self.houses - i * per > 0:
                count = min(per, self.houses - i * per)
                self.workers.append(
                    Proc("worker", ports, str(i * per), str(count), str(self.speed), str(self.home))
                )
        self.started += self.workers
        self.connect_refused = sum(w.line(timeout)["refused"] for w in self.workers)
        self.connect_seconds = time.monotonic() - t0

    def start(self) -> None:
        time.sleep(1.0)  # the retained burst drains
        self.marks = {
            "cpu": {name: cpu_seconds(pid) for name, pid in self.pids.items()},
            "fleet_cpu": sum(cpu_seconds(p.p.pid) for p in self.workers),
            "platform_cpu": cpu_seconds(self.platform.p.pid),
            "machine": machine_busy(),
            "t": time.monotonic(),
        }
        for p in self.started:
            p.send("start")

    def access(self) -> None:
        """Every house's door used now (four events each)."""
        for w in self.workers:
            w.send("access")

    def watch(self, since: float, port: int, timeout: float = 600) -> dict[str, Any]:
        """After a node was killed at Unix time ``since``: when every house that lost its
        session is back, subscribed and drained (the workers' latest), and how many moved."""
        for w in self.workers:
            w.send(f"watch {since} {port}")
        answers = [w.line(timeout) for w in self.workers]
        out: dict[str, Any] = {k: sum(a[k] for a in answers) for k in ("moved", "done")}
        for k in ("back", "subscribed", "drained"):
            out[f"{k}_s"] = max(a[k] for a in answers) - since
        for k in ("connect_failures", "sub_refused"):
            out[k] = sum(a[k] for a in answers)
        out["largest_backlog"] = max(a["largest_backlog"] for a in answers)
        for k in ("back", "drained"):
            each = sorted(x for a in answers for x in a[f"each_{k}"])
            out[f"{k}_p50_s"] = each[len(each) // 2] if each else None
        return out

    def stop(self) -> dict[str, Any]:
        m = self.marks
        seconds = time.monotonic() - m["t"]
        node_cpu = {n: (cpu_seconds(pid) - m["cpu"][n]) / seconds for n, pid in self.pids.items()}
        node_rss = {n: rss_mb(pid) for n, pid in self.pids.items()}
        fleet_cpu = (sum(cpu_seconds(p.p.pid) for p in self.workers) - m["fleet_cpu"]) / seconds
        platform_cpu = (cpu_seconds(self.platform.p.pid) - m["platform_cpu"]) / seconds
        busy, total = machine_busy()
        machine = (busy - m["machine"][0]) / max(1e-9, total - m["machine"][1])
        self.platform.send("quiet")  # the last command still finds its house up
        for w in self.workers:
            w.send("stop")
        reports = [w.line(60) for w in self.workers]
        published = sum(r["qos0"] + r["qos1"] for r in reports)
        self.platform.send(f"stop {published}")
        seen = self.platform.line(60)
        received = sum(seen["received"].values())
        rss = sum(r["rss_kb"] for r in reports)
        base = sum(r["base_rss_kb"] for r in reports)
        total_fields = ("connected", "disconnects", "failed", "connect_failures", "sub_refused")
        result: dict[str, Any] = {"houses": self.houses}
        result |= {k: sum(r[k] for r in reports) for k in total_fields}
        result |= {
            "published_per_s": published / seconds,
            "qos1_unacked": sum(r["unacked"] for r in reports),  # in flight at "stop"
            "delivered_ratio": received / published if published else 1.0,
            "latency_p99_s": seen["latency"]["p99"],
            "latency_p50_s": seen["latency"]["p50"],
            "commands": seen["commands"],
            "event_ids": len(seen["event_ids"]),
            # QoS 1 events published in the window that never reached the platform, by id
            "events_published": sum(len(r["event_ids"]) for r in reports),
            "events_lost": len(
                {i for r in reports for i in r["event_ids"]} - set(seen["event_ids"])
            ),
            "events_from_node": seen["events_from"],
            "platform_sub_refused": seen["sub_refused"],
            "node_cpu": node_cpu,
            "node_rss_mb": node_rss,
            "broker_cpu": sum(node_cpu.values()),
            "broker_rss_mb": sum(node_rss.values()),
            "fleet_cpu": fleet_cpu,
            "platform_cpu": platform_cpu,
            "machine_busy": machine,  # of all cores: 1.0 = every core busy
            "cores": os.cpu_count(),
            "load_average": os.getloadavg()[0],  # others' work included (a shared machine)
            "fleet_rss_mb": rss / 1024,
            "rss_per_house_kb": (rss - base) / self.houses,
            "connect_seconds": self.connect_seconds,
            "connect_refused": self.connect_refused,
        }
        cmds = result["commands"]
        result["sustained"] = bool(
            result["connected"] == self.houses
            and not result["disconnects"]
            and not result["failed"]
            and result["qos1_unacked"] <= self.houses  # a few in flight at the instant of "stop"
            and result["delivered_ratio"] >= 0.99
            and not result["events_lost"]
            and (result["latency_p99_s"] or 0) <= 1.0
            and cmds["answered"] == cmds["sent"]
            and not cmds["duplicates"]
            and max(node_cpu.values()) < 0.9
        )
        return result

    def close(self) -> None:
        for p in self.started:
            p.close()

    def __enter__(self) -> Fleet:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure(
    ports: list[int], pids: dict[str, int], houses: int, seconds: float, **kw: Any
) -> dict[str, Any]:
    """One window of ``seconds`` with ``houses`` houses: the result of :meth:`Fleet.stop`."""
    with Fleet(ports, pids, houses, **kw) as fleet:
        fleet.start()
        time.sleep(seconds)
        return fleet.stop()


def rounded(r: dict[str, Any]) -> str:
    """A result on one line, for the bench's progress output."""

    def r4(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        return {k: r4(x) for k, x in v.items()} if isinstance(v, dict) else v

    return json.dumps(r4(r))
