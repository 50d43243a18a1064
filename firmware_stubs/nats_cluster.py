"""A real 3-node NATS cluster speaking MQTT (over JetStream) on loopback, for the tests that
must see a clustered broker: a retained message, a last will or a QoS 1 message crossing nodes,
a node killed under a gateway.

NATS keeps every MQTT session, retained message and unacknowledged QoS 1 message in JetStream
streams (``stream_replicas: 3``: each on every node), so any node serves any of them. What a
test must allow for, measured on this machine (docs/monitoring.md, "What a 3-node cluster
showed"):

- a fresh node accepts TCP on its MQTT port long before its JetStream is ready, so "started"
  means a real MQTT CONNECT got CONNACK 0 on every node (:meth:`NatsCluster.wait_ready`);
- losing the leader of the sessions' stream stalls new MQTT sessions on the survivors for
  4–9 s while they elect another (:data:`LEADER_LOSS_STALL`); a refused CONNECT is held 4 s and
  closed without CONNACK;
- with a node down, a QoS 1 SUBSCRIBE may be refused (SUBACK 0x80) while JetStream takes more
  than 4 s to create its consumer, again and again on a loaded machine;
- sessions refused ("unable to connect" in the logs) are counted by reason by
  :meth:`NatsCluster.refusals` ("JetStream system temporarily unavailable" among them);
- a ``.`` or a space in a topic closes the client's connection (NATS subjects are
  ``.``-separated), hence the contract's ``[A-Za-z0-9_-]`` ids.

Each node is a ``nats-server`` in its own session, tied to this process (it dies with it), with
its own ports, chosen free at run time, and its own store directory, kept across a
:meth:`~NatsCluster.restart`. Never imports gatewayd: this is the gateway's peer.

``python -m firmware_stubs.nats_cluster`` (``make cluster``) starts one for people.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_stubs.broker import free_port
from firmware_stubs.lifetime import tied_to_parent

# The longest the survivors have been seen to refuse or stall new sessions after the sessions'
# stream leader was killed (4.3–8.6 s measured, 10 runs), with margin for a loaded machine.
LEADER_LOSS_STALL = 20.0
# A fresh cluster: three processes, routes between them, a meta leader, then the MQTT streams
# created with three replicas on the first CONNECT (2–4 s here, more under load).
START_TIMEOUT = 45.0
# How long NATS waits for a subscriber's PUBACK before it delivers a QoS 1 message again
# (``mqtt { ack_wait }``; 30 s by default). A message in flight to a subscriber whose node is
# killed comes again only then, on whichever node the session resumes: shortened here so the
# tests see it in their time, and a figure the platform must know (docs/monitoring.md).
ACK_WAIT = 10.0
REFUSAL = "JetStream system temporarily unavailable"
# The stream NATS keeps MQTT sessions in: while it has no leader, no session can start.
SESSIONS = "$MQTT_sess"


def nats_server_path() -> str:
    return shutil.which("nats-server") or "/usr/sbin/nats-server"


def mqtt_connack(port: int, timeout: float = 5.0, client_id: str = "") -> int | None:
    """One MQTT 3.1.1 CONNECT (clean session) to 127.0.0.1:``port``: CONNACK's return code
    (0 = accepted), or None when the connection failed or closed without one. Bytes on the
    wire, not a client library: readiness must not depend on a client's retry policy."""
    cid = (client_id or f"ready-{os.getpid()}-{time.monotonic_ns()}").encode()
    # variable header: protocol name "MQTT", level 4, flags 0x02 (clean session), keepalive 10
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(bytes([0x10, len(body)]) + body)
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    return None
                ack += chunk
            if ack[0] != 0x20:
                return None
            s.sendall(b"\xe0\x00")  # DISCONNECT: the session is removed at once
            return ack[3]
    except OSError:
        return None


@dataclass
class NatsNode:
    """One node's name, ports and files; ``proc`` while it runs."""

    name: str
    dir: Path
    client_port: int
    cluster_port: int
    mqtt_port: int
    http_port: int
    base_conf: str = ""  # its configuration without the caller's extra lines
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def log(self) -> Path:
        return self.dir / "nats.log"

    @property
    def conf(self) -> Path:
        return self.dir / "nats.conf"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """``size`` nats-server nodes in one cluster, MQTT on each; start, kill -9, restart, stop."""

    def __init__(
        self, workdir: Path, size: int = 3, name: str = "gwtest", extra_conf: str = ""
    ) -> None:
        """``extra_conf``: more lines of every node's configuration (accounts, permissions);
        ``size`` 1 is a single JetStream server, no cluster."""
        self.workdir = workdir
        self.name = name
        self.nodes: list[NatsNode] = []
        for i in range(1, size + 1):
            d = workdir / f"n{i}"
            d.mkdir(parents=True, exist_ok=True)
            self.nodes.append(
                NatsNode(f"n{i}", d, free_port(), free_port(), free_port(), free_port())
            )
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        for n in self.nodes:
            cluster = (
                f"cluster {{ name: {name}, listen: 127.0.0.1:{n.cluster_port}, "
                f"routes: [{routes}] }}\n"
                if size > 1
                else ""
            )
            n.base_conf = (
                f"server_name: {n.name}\n"
                f"listen: 127.0.0.1:{n.client_port}\n"
                f"http: 127.0.0.1:{n.http_port}\n"
                f'jetstream {{ store_dir: "{n.dir / "js"}", max_memory_store: 64MB, '
                "max_file_store: 512MB }\n"
                f"{cluster}"
                # Every session, retained message and pending QoS 1 message on all three nodes:
                # any one of them can die without losing any.
                f"mqtt {{ listen: 127.0.0.1:{n.mqtt_port}, stream_replicas: {size}, "
                f'ack_wait: "{ACK_WAIT:.0f}s" }}\n'
            )
            n.conf.write_text(n.base_conf + extra_conf)

    # -- life -----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        for i in range(len(self.nodes)):
            self._spawn(i)
        self.wait_ready(timeout)

    def _spawn(self, i: int) -> None:
        n = self.nodes[i]
        with open(n.log, "ab") as log:
            # Its own session (a Ctrl-C meant for `make cluster`'s caller or a test must not
            # reach it first); the parent-death signal takes it down with this process.
            n.proc = subprocess.Popen(
                tied_to_parent([nats_server_path(), "-c", str(n.conf)]),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT, nodes: list[int] | None = None) -> float:
        """Until every running node (or those in ``nodes``) accepts an MQTT session; the seconds
        it took. RuntimeError naming the node and its log's tail otherwise."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        for i in nodes if nodes is not None else self.running():
            n = self.nodes[i]
            while mqtt_connack(n.mqtt_port, timeout=min(5.0, timeout)) != 0:
                if n.proc is None or n.proc.poll() is not None:
                    raise RuntimeError(f"nats {n.name} exited:\n{self.tail(i)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nats {n.name} refused MQTT sessions for {timeout:.0f} s:\n{self.tail(i)}"
                    )
                time.sleep(0.1)
        return time.monotonic() - t0

    def kill(self, i: int) -> None:
        """kill -9 node ``i``: no goodbye to its clients or its peers."""
        proc = self.nodes[i].proc
        assert proc is not None, f"{self.nodes[i].name} is not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        self.nodes[i].proc = None

    def restart(self, i: int, timeout: float = START_TIMEOUT) -> None:
        """Start node ``i`` again on its ports and store (it recovers its replicas), and wait
        until it accepts MQTT."""
        if self.nodes[i].alive:
            self.kill(i)
        self._spawn(i)
        self.wait_ready(timeout, nodes=[i])

    def reload(self, extra_conf: str) -> None:
        """Replace every node's ``extra_conf`` and have it reload its configuration (SIGHUP):
        permissions change for clients already connected."""
        for n in self.nodes:
            n.conf.write_text(n.base_conf + extra_conf)
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(5)
                n.proc = None

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- looking at it ----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def pids(self) -> dict[str, int]:
        """The running nodes' process ids, by node name."""
        return {n.name: n.proc.pid for n in self.nodes if n.proc is not None}

    def running(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.alive]

    def index_of(self, name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.name == name)

    def monitor(self, i: int, path: str) -> Any:
        """Node ``i``'s monitoring endpoint ``path`` (e.g. ``/jsz``), as JSON."""
        url = f"http://127.0.0.1:{self.nodes[i].http_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)

    def meta_leader(self) -> int | None:
        """The JetStream meta leader's index, as a running node sees it (None: no leader)."""
        for i in self.running():
            try:
                name = self.monitor(i, "/jsz").get("meta_cluster", {}).get("leader")
            except (OSError, ValueError):
                continue
            if name:
                return self.index_of(name)
        return None

    def stream_leader(self, stream: str = SESSIONS) -> int | None:
        """The index of the node leading JetStream ``stream`` (default: the MQTT sessions'
        stream, whose loss stalls new sessions), as a running node sees it."""
        for i in self.running():
            try:
                jsz = self.monitor(i, "/jsz?accounts=true&streams=true")
            except (OSError, ValueError):
                continue
            for account in jsz.get("account_details", []):
                for s in account.get("stream_detail", []):
                    name = s.get("cluster", {}).get("leader")
                    if s.get("name") == stream and name:
                        return self.index_of(name)
        return None

    def logs(self, i: int) -> str:
        return self.nodes[i].log.read_text(errors="replace")

    def tail(self, i: int, lines: int = 30) -> str:
        return "\n".join(self.logs(i).splitlines()[-lines:])

    def refusals(self) -> Counter[str]:
        """Sessions the nodes refused (``unable to connect`` in their logs), by reason:
        ``unavailable`` ("JetStream system temporarily unavailable"), ``timeout`` (a JetStream
        request with no answer, e.g. while a stream elects a leader), or the reason's text."""
        reasons: Counter[str] = Counter()
        for i in range(len(self.nodes)):
            for line in self.logs(i).splitlines():
                _, found, why = line.partition("unable to connect: ")
                if not found:
                    continue
                if REFUSAL in why:
                    reasons["unavailable"] += 1
                elif "timeout for request" in why:
                    reasons["timeout"] += 1
                else:
                    reasons[why[:80]] += 1
        return reasons


def main() -> None:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="A 3-node NATS cluster with MQTT, on loopback.")
    ap.add_argument("--dir", type=Path, help="where the nodes keep their files (default: temp)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nats-cluster-") as tmp:
        cluster = NatsCluster(args.dir or Path(tmp))
        t0 = time.monotonic()
        cluster.start()
        print(f"3 nodes accept MQTT ({time.monotonic() - t0:.1f} s); logs in {cluster.workdir}")
        for n in cluster.nodes:
            print(f"  {n.name}  {n.url}")
        print(f"[mqtt] url = [{', '.join(json.dumps(u) for u in cluster.urls)}]")
        print("Ctrl-C stops it.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
