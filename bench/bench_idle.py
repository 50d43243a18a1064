"""An idle daemon sleeps (issue 17): wake-ups per second and CPU of `gatewayd run`, beside a bare
``python -c`` loop sleeping 1 s, measured in the same run over the same window.

Wake-ups are the times the kernel put one of the process's threads on a CPU: the second field
of ``/proc/<pid>/task/<tid>/schedstat`` ("run_count" in sched-stats.rst: timeslices run),
summed over its threads, from the end of start-up to the end of the window. CPU is utime +
stime from ``/proc/<pid>/stat`` over the same window. Two daemons: no devices at all, and the
demo site idle (the emulated house: 3 piles with nothing charging polled at the shipped 1 s
and 10 s, 3 detectors, 2 locks on the fake BlueZ), each with a local mosquitto. Targets: ≤ 2 wake-ups/s with no devices, ≤ 5/s
with the idle demo site.

Run alone: ``python -m bench.bench_idle [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware_stubs.broker import Broker
from firmware_stubs.site import EmulatedSite, SitePlan
from tests.harness import Daemon, make_site

BARE = "import time\nwhile True:\n    time.sleep(1)\n"
TICK = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> tuple[int, float]:
    """(times scheduled, CPU seconds) of every thread of ``pid`` so far."""
    runs = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                runs += int(f.read().split()[2])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return runs, (int(fields[11]) + int(fields[12])) / TICK


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    before = {k: sample(p) for k, p in pids.items()}
    time.sleep(seconds)
    after = {k: sample(p) for k, p in pids.items()}
    return {
        k: {"wakeups_s": (after[k][0] - before[k][0]) / seconds,
            "cpu_pct": 100 * (after[k][1] - before[k][1]) / seconds}
        for k in pids
    }  # fmt: skip


def idle(seconds: float = 60.0, settle: float = 15.0) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        (work / "none").mkdir()
        (work / "demo").mkdir()
        broker = Broker(work)
        broker.start()
        # The piles at the shipped poll periods (the test plan polls at 0.2 s).
        house = EmulatedSite(work / "demo", SitePlan(fast_seconds=1.0, slow_seconds=10.0)).start()
        bare = subprocess.Popen([sys.executable, "-c", BARE])
        daemons: dict[str, Daemon] = {
            "no devices": Daemon(make_site(work / "none", broker.url, "", "gw-idle-a"), tick=1.0),
            "demo site, idle": Daemon(
                make_site(work / "demo", broker.url, house.config(work / "demo"), "gw-idle-b"),
                tick=1.0,
            ),
        }
        try:
            for d in daemons.values():
                d.start()
            time.sleep(settle)  # connected, piles configured, locks found
            pids: dict[str, Any] = {"bare python sleep(1) loop": bare.pid}
            pids.update({k: d.proc.pid for k, d in daemons.items() if d.proc is not None})
            return measure(pids, seconds)
        finally:
            for d in daemons.values():
                if d.alive:
                    d.stop()
            bare.kill()
            bare.wait()
            house.stop()
            broker.stop()


def run(quick: bool = False) -> list[dict[str, Any]]:
    from bench.common import row

    got = idle(10.0 if quick else 60.0)
    base = got["bare python sleep(1) loop"]
    out = []
    for name, target in (("no devices", 2.0), ("demo site, idle", 5.0)):
        m = got[name]
        out.append(row(f"idle daemon, {name}: wake-ups/s", m["wakeups_s"], "/s",
                       "bare python sleep(1) loop", base["wakeups_s"], f"<= {target:g}/s",
                       m["wakeups_s"] <= target))  # fmt: skip
        out.append(row(f"idle daemon, {name}: CPU", m["cpu_pct"], "%",
                       "bare python sleep(1) loop", base["cpu_pct"]))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    for name, m in idle(args.seconds).items():
        print(f"{name:>28}: {m['wakeups_s']:6.2f} wake-ups/s  {m['cpu_pct']:5.2f} % CPU")


if __name__ == "__main__":
    main()
