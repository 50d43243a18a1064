"""Soak: the whole emulated house at N× normal event rates, with faults on a schedule.

    python -m bench.soak --minutes 30            # the long run (figures in docs/reliability.md)
    python -m bench.soak --minutes 1 --rate 300  # a quick look

The real daemon runs against a real mosquitto and the full emulated site of firmware_stubs.site
(SRB-433 receiver on a pty, two piles on an RS-485 pty line, one over Modbus TCP, two DL-B2
locks on the fake BlueZ). A traffic thread drives detector heartbeats, cards at the doors,
charging sessions and signed commands at ``rate`` × the normal rates below; a fault thread
runs cycles of: broker restart, receiver unplugged, a pile silent, a lock out of range, and a
whole fire episode (alarm → fire mode → clear → fire_reset → chargers back on). Critical
events are injected throughout (forced doors, tampering, smoke alarms) and matched one by one
against what reached the broker. At the end an overheat and a smoke alarm prove the rules
still act. Not part of `make bench` (bench_*.py only): it takes as long as it is told.

The fault schedule is in bench/soak_faults.py, the platform's client and the daemon's witness
in bench/soak_peers.py, the figures and the verdict in bench/soak_report.py.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.soak_faults import FaultSchedule
from bench.soak_peers import GW, Platform, Witness, control, key_of, proc_figures
from bench.soak_report import command_figures, process_figures, verdict
from firmware_stubs.broker import Broker
from firmware_stubs.site import EmulatedSite
from gatewayd.commands.service import ACTION_TIMEOUT

REPO = Path(__file__).resolve().parent.parent
#: Normal rates per hour in a rental house (per detector, per door, per charger port, per house).
NORMAL_PER_HOUR = {"heartbeat": 1.0, "card": 12.0, "session": 1.0, "command": 12.0}
CRITICAL_EVERY = 0.1  # of a fault cycle: a forced door or tampering, alternating doors


class Soak(FaultSchedule):
    def __init__(self, seconds: float, rate: float, seed: int, workdir: Path) -> None:
        self.seconds = seconds
        self.rate = rate
        self.rnd = random.Random(seed)
        self.seed = seed
        self.dir = workdir
        self.cycle = min(600.0, seconds / 2)
        self.t0 = 0.0
        self.stop = threading.Event()
        self.away: set[str] = set()  # paths down right now: "broker", "rx", "pile-2", "door-back"
        self.busy = threading.Lock()  # the fire episode owns the house while it runs
        self.gate = threading.Lock()  # a fault starts between injections, never during one
        self.expected: dict[tuple[str, str, int], float] = {}  # (device, type, seq) -> when
        self.fire_episodes = 0
        self.faults: list[tuple[float, str, float]] = []
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.plugged: dict[str, set[int]] = {}
        self.errors: list[str] = []

    # -- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.house = EmulatedSite(self.dir).start()
        # With persistence, as a platform's broker runs: sessions survive its restarts.
        # mosquitto started as root drops to its own user: its database lives where that user
        # can reach it (a work directory may be 0700, as pytest's and mkdtemp's are).
        db = self.mosquitto_db = Path(tempfile.mkdtemp(prefix="soak-mosquitto-"))
        db.chmod(0o777)
        persist = f"persistence true\npersistence_location {db}/\n"
        if os.environ.get("SOAK_BROKER_DEBUG"):  # every PUBLISH and PUBACK in mosquitto.log
            persist += "log_type all\n"
        self.broker = Broker(self.dir, extra_conf=persist)
        self.broker.start()
        key = os.urandom(32)
        key_file = self.dir / "command.key"
        key_file.write_text(key.hex())
        key_file.chmod(0o600)
        self.sock = self.dir / "control.sock"
        cfg = self.dir / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nid = "{GW}"\nsite = "soak"\ndata_dir = "{self.dir / "data"}"\n\n'
            f'[mqtt]\nurl = "{self.broker.url}"\nreconnect_max_seconds = 2.0\n\n'
            f'[security]\ncommand_key_file = "{key_file}"\ncommands_per_minute = 600\n\n'
            f"{self.house.config(self.dir)}"
        )
        self.log = self.dir / "gatewayd.log"
        env = {**os.environ, "GATEWAYD_CONTROL_SOCKET": str(self.sock)}
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gatewayd", "run", "-c", str(cfg)],
                stdout=logf, stderr=logf, cwd=REPO, env=env,
            )  # fmt: skip
        self.platform = Platform(self.broker.port, key)
        self._until(self._site_up, 40, "the site to come up")
        self.witness = Witness(self.sock)
        for dev, _pile in self.house.piles():
            self.plugged[dev] = set()

    def _site_up(self) -> bool:
        p = self.platform
        locks = all(p.state(f"state/{d}").get("connected") for d in self.house.plan.locks)
        piles = all(p.state(f"state/{d}").get("online") for d, _ in self.house.piles())
        return locks and piles and bool(p.state("status").get("online"))

    def _until(self, pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.proc.returncode})")
            time.sleep(0.05)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- traffic at rate × normal --------------------------------------------------------------

    def traffic(self) -> None:
        h = self.house
        per = {k: 3600.0 / (v * self.rate) for k, v in NORMAL_PER_HOUR.items()}
        jobs: list[tuple[float, int, str, str]] = []
        seq = itertools.count()
        for det in h.plan.detectors:
            heapq.heappush(
                jobs, (self.rnd.uniform(0, per["heartbeat"]), next(seq), "heartbeat", det)
            )
        for door in h.plan.locks:
            heapq.heappush(jobs, (self.rnd.uniform(0, per["card"]), next(seq), "card", door))
        ports = [(d, p) for d, pile in h.piles() for p in range(1, pile.ports_n + 1)]
        for dev, port in ports:
            heapq.heappush(jobs, (self.rnd.uniform(0, per["session"]), next(seq), "session", f"{dev}:{port}"))  # fmt: skip
        heapq.heappush(jobs, (0.5, next(seq), "command", ""))
        heapq.heappush(jobs, (self.cycle * CRITICAL_EVERY, next(seq), "critical", "0"))
        heapq.heappush(jobs, (1.0, next(seq), "sample", ""))
        while not self.stop.is_set():
            at, _, kind, arg = jobs[0]
            delay = at - self.elapsed()
            if delay > 0:
                self.stop.wait(min(delay, 0.5))
                continue
            heapq.heappop(jobs)
            try:
                nxt = self._job(kind, arg, per)
            except Exception as exc:  # a hiccup of the driving side is recorded, not fatal
                self.errors.append(f"{kind} {arg}: {type(exc).__name__}: {exc}")
                nxt = per.get(kind, 1.0)
            if kind == "critical":
                arg = str(int(arg) + 1)
            heapq.heappush(jobs, (at + nxt, next(seq), kind, arg))

    def _job(self, kind: str, arg: str, per: dict[str, float]) -> float:
        h, jitter = self.house, self.rnd.uniform(0.5, 1.5)
        if kind == "heartbeat":
            if "rx" not in self.away:
                h.call(h.detector(arg).heartbeat())
            return per["heartbeat"] * jitter
        if kind == "card":
            if arg not in self.away and not self.busy.locked():
                h.lock_call(h.locks[arg].card, self.rnd.randrange(1, 9999))
            return per["card"] * jitter
        if kind == "session":
            dev, port = arg.split(":")
            self._session(dev, int(port))
            return per["session"] * jitter
        if kind == "command":
            self._command()
            return per["command"] * jitter
        if kind == "critical":
            self._critical(int(arg))
            return self.cycle * CRITICAL_EVERY
        self.samples.append((self.elapsed(), proc_figures(self.proc.pid)))
        return max(1.0, self.seconds / 120)

    def _session(self, dev: str, port: int) -> None:
        if self.busy.locked():
            return
        plugged = self.plugged[dev]

        async def move() -> None:
            pile = self.house.pile(dev)
            if port in plugged:
                pile.unplug(port)
            else:
                pile.plug(port, soc=self.rnd.uniform(0.2, 0.9))

        self.house.call(move())
        plugged ^= {port}

    def _command(self) -> None:
        if "broker" in self.away or self.busy.locked():
            return
        h, p = self.house, self.platform
        choice = self.rnd.randrange(4)
        if choice == 0:
            p.command(GW, "ping")
        elif choice == 1:
            p.command(self.rnd.choice(list(h.plan.locks)), "status")
        else:
            dev = self.rnd.choice([d for d, _ in h.piles()])
            p.command(
                dev, "port_on" if choice == 2 else "port_off", {"port": self.rnd.randrange(1, 5)}
            )

    def _critical(self, n: int) -> None:
        with self.gate:
            self._inject_critical(n)

    def _inject_critical(self, n: int) -> None:
        """A forced door or a tamper on a door the gateway is connected to."""
        doors = [d for d in self.house.plan.locks if d not in self.away]
        door = doors[n % len(doors)] if doors else None
        if door is None or self.busy.locked():
            return
        if not self.platform.state(f"state/{door}").get("connected"):
            return
        lock = self.house.locks[door]
        if n % 3 == 2:
            counter = self.house.lock_call(lambda: (lock.tamper(), lock.counter)[1])
            self.expected[(door, "door.tamper", counter)] = round(self.elapsed(), 1)
            return

        def force() -> int | None:
            if lock.door or lock.lock_state != 0:  # unlocked by a card just now: not forced
                return None
            lock.open_door()
            return int(lock.counter)

        counter = self.house.lock_call(force)
        if counter is not None:
            self.expected[(door, "door.forced", counter)] = round(self.elapsed(), 1)
            self.house.lock_call(lock.close_door)

    def _fire_alarm(self) -> float:
        h = self.house
        self.last_detector = self.rnd.choice(list(h.plan.detectors))
        t = time.monotonic()
        frame = h.call(h.detector(self.last_detector).alarm(150))
        self.expected[(self.last_detector, "smoke.alarm", frame.seq)] = round(self.elapsed(), 1)
        self._until(lambda: self.platform.state("status").get("fire_mode"), 15, "fire mode")
        return time.monotonic() - t

    # -- the run and the verdict ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.start()
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=f, daemon=True) for f in (self.traffic, self.faults_thread)
        ]
        for t in threads:
            t.start()
        self._sleep_until(self.seconds)
        threads[1].join(max(60.0, self.cycle))  # the fault cycles, however late they ran
        self.stop.set()
        threads[0].join(60)
        self.samples.append((self.elapsed(), proc_figures(self.proc.pid)))
        status = control(self.sock, {"cmd": "status"})
        final = self._final_checks()
        # A command may take a driver's whole action timeout to be answered (with `timeout`).
        self.platform.await_answers(ACTION_TIMEOUT + 5.0)
        time.sleep(1.0)  # the last events drain
        return self._figures(status, final)

    def _final_checks(self) -> dict[str, Any]:
        """Every rule still acts: an overheat is cut, a smoke alarm puts the house in fire mode."""
        h, p = self.house, self.platform
        out: dict[str, Any] = {}
        for port in range(1, 5):
            p.command("pile-1", "port_on", {"port": port})
        time.sleep(1.0)

        async def heat() -> None:
            pile = h.pile("pile-1")
            pile.plug(1)
            pile.heat_port(1, 80.0)

        t = time.monotonic()
        h.call(heat())
        cut = p.wait_event(
            lambda e: e["type"] == "charger.port_cut" and e["device"] == "pile-1"
            and "charger_overheat" in e["data"].get("reason", ""),
            20,
        )  # fmt: skip
        out["overheat_cut_s"] = None if cut is None else round(time.monotonic() - t, 2)
        out["overheat_cut"] = cut is not None
        try:
            out["fire_mode_s"] = round(self._fire_alarm(), 2)
            out["fire_mode"] = True
            self._until(
                lambda: not any(pt.relay for _, pl in h.piles() for pt in pl.ports), 15, "cuts"
            )
            out["all_relays_open"] = True
        except RuntimeError as exc:
            out.update(fire_mode=bool(p.state("status").get("fire_mode")), error=str(exc))
        return out

    def _figures(self, status: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
        with self.platform.lock:
            events = list(self.platform.events)
        got = {k for k in map(key_of, events) if k is not None}
        seen = set(self.witness.seen)
        lost = sorted([*k, at, "heard" if k in seen else "unheard"]
                      for k, at in self.expected.items() if k not in got)  # fmt: skip
        fire_events = sum(1 for e in events if e["type"] == "gateway.fire_mode")
        self.witness.close()  # an attached `events` client makes the stop log a traceback
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGTERM)
        exit_code = self.proc.wait(30)
        log = self.log.read_text(errors="replace")
        return {
            "seconds": round(self.elapsed(), 1),
            "rate": self.rate,
            "seed": self.seed,
            "cycle_seconds": self.cycle,
            "faults": self.faults,
            "events_received": len(events),
            "events_by_severity": dict(Counter(e["severity"] for e in events)),
            "critical_injected": len(self.expected),
            "critical_lost": lost,
            "fire_episodes": self.fire_episodes + 1,
            "fire_mode_events": fire_events,
            **command_figures(self.platform),
            **process_figures(self.samples, self.cycle),
            "tasks": status.get("tasks"),
            "outbox_depth_end": status.get("outbox_depth"),
            "final": final,
            "tracebacks": log.count("Traceback"),
            "exit_code": exit_code,
            "driver_errors": self.errors,
        }

    def close(self) -> None:
        self.stop.set()
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "platform", None) is not None:
            self.platform.close()
        if getattr(self, "witness", None) is not None:
            self.witness.close()
        if getattr(self, "broker", None) is not None:
            self.broker.stop()
            shutil.rmtree(self.mosquitto_db, ignore_errors=True)
        if getattr(self, "house", None) is not None:
            self.house.stop()


def soak(
    seconds: float, rate: float, seed: int | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    seed = int.from_bytes(os.urandom(4), "big") if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        run = Soak(seconds, rate, seed, workdir or Path(tmp))
        try:
            return run.run()
        finally:
            run.close()


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=10.0, help="× the normal event rates")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and data here")
    args = ap.parse_args()
    # Ctrl-C, and SIGTERM from a supervisor or `timeout`: leave through the cleanup that stops
    # the daemon, mosquitto and the emulators (a background job may start with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    fig = soak(args.minutes * 60, args.rate, args.seed, args.workdir)
    text = json.dumps(fig, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    problems = verdict(fig)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
