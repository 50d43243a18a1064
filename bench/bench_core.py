"""Core figures (issue 2): start-up to ready, idle RSS, and the `ping` command round trip,
each beside its baseline measured in the same run.

- start-up: `gatewayd run` spawn → its "ready" log line, against a bare
  `python -c "import <the third-party modules the daemon has loaded by then>"`;
- idle RSS with no devices, after a few seconds of running;
- ping: a signed `ping` published → its result received, against a bare MQTT echo (one client
  publishes, a second client echoes it back) through the same local mosquitto.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bench.common import REPO, percentile, row, rss_mb, start_daemon, write_site
from firmware_stubs.broker import Broker
from gatewayd.commands.signing import sign

LIST_IMPORTS = """
import sys
import gatewayd.cli.main, gatewayd.runtime, gatewayd.config
ours = {"gatewayd", "drivers", "rules", "firmware_stubs"}
mods = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - ours - {"__main__"})
print(" ".join(m for m in mods if not m.startswith("_")))
"""


def third_party_modules() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", LIST_IMPORTS], capture_output=True, text=True, check=True, cwd=REPO
    )
    return out.stdout.split()


def bare_import_seconds(mods: list[str], n: int) -> list[float]:
    code = "import " + ", ".join(mods) + "; import paho.mqtt.client" if mods else "pass"
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return times


class Roundtrip:
    """Publish on one topic, wait for the answer on another; a paho client with its thread."""

    def __init__(self, port: int, answer_topic: str) -> None:
        self.got = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda *_a: self.got.set()
        self.client.connect("127.0.0.1", port)
        nodelay(self.client)
        self.client.subscribe(answer_topic, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def once(self, topic: str, payload: bytes) -> float:
        self.got.clear()
        t0 = time.perf_counter()
        self.client.publish(topic, payload, qos=1)
        if not self.got.wait(5):
            raise RuntimeError("no answer within 5 s")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def nodelay(client: mqtt.Client) -> None:
    """Measure processing, not Nagle: the gateway sets TCP_NODELAY, so do both test clients."""
    sock = client.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


ECHO = """
import socket, sys, paho.mqtt.client as m
c = m.Client(m.CallbackAPIVersion.VERSION2)
c.on_message = lambda c, u, msg: c.publish("bench/echo/out", msg.payload, qos=1)
c.on_connect = lambda c, u, f, rc, p: (c.subscribe("bench/echo/in", qos=1), print("up", flush=True))
c.connect("127.0.0.1", int(sys.argv[1]))
c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.loop_forever()
"""


def run(quick: bool) -> list[dict[str, Any]]:
    n_start = 5 if quick else 15
    n_ping = 200 if quick else 1000
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp)
        broker.start()
        try:
            cfg, key = write_site(tmp, broker.url)
            # Like an installed gateway (pip byte-compiles) and like the baseline's packages:
            # this machine sets PYTHONDONTWRITEBYTECODE, which would otherwise make every start
            # compile our sources while the baseline loads bytecode.
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "gatewayd", "drivers", "rules", "plugins"],
                check=True,
                cwd=REPO,
            )
            mods = third_party_modules()
            base, starts, rss = [], [], 0.0
            for i in range(n_start):  # interleaved, so both see the same machine noise
                base += bare_import_seconds(mods, 1)
                proc, t = start_daemon(cfg, tmp / f"start{i}.log")
                starts.append(t)
                if i == n_start - 1:
                    time.sleep(3.0)
                    rss = rss_mb(proc.pid)
                    rows += ping_rows(broker.port, key, n_ping)
                proc.terminate()
                proc.wait(10)
            b, s = statistics.median(base), statistics.median(starts)
            rows.insert(
                0,
                row(
                    "start-up to ready (median)",
                    s * 1000,
                    "ms",
                    f"bare `import {' '.join(mods)} paho`",
                    b * 1000,
                    "≤ 1.5 × baseline",
                    s <= 1.5 * b,
                ),
            )
            rows.insert(1, row("idle RSS, no devices", rss, "MB", target="≤ 35 MB", ok=rss <= 35))
        finally:
            broker.stop()
    return rows


def ping_rows(port: int, key: bytes, n: int) -> list[dict[str, Any]]:
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "up"
        bare = Roundtrip(port, "bench/echo/out")
        gw = Roundtrip(port, "pingan/v1/gw-bench/cmd/result")
        t_bare, t_gw = [], []
        for i in range(n + 20):  # interleaved, so both see the same machine noise
            now = time.time()
            cmd = sign(
                key,
                {
                    "id": f"p{i}-{os.getpid()}",
                    "device": "gw-bench",
                    "action": "ping",
                    "args": {},
                    "user": "bench",
                    "iat": now,
                    "exp": now + 30,
                },
            )
            payload = json.dumps(cmd).encode()
            tb = bare.once("bench/echo/in", payload)
            tg = gw.once("pingan/v1/gw-bench/cmd", payload)
            if i >= 20:  # warm-up
                t_bare.append(tb)
                t_gw.append(tg)
        bare.close()
        gw.close()
    finally:
        echo.terminate()
        echo.wait(5)
    out = []
    for p in (50, 99):
        g, b = percentile(t_gw, p) * 1000, percentile(t_bare, p) * 1000
        out.append(
            row(
                f"ping round trip p{p} ({n} commands)",
                g,
                "ms",
                "bare MQTT echo",
                b,
                "≤ 2 × baseline",
                g <= 2 * b,
            )
        )
    return out


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(r)
