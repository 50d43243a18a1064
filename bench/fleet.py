"""Fleet simulator: many houses publishing exactly what a gateway publishes, against one broker or
the nodes of a cluster, and the platform taking it all in and sending commands.

The houses (``bench/fleet_house.py``) run in worker processes; house ``i`` starts on node
``i % nodes`` (round robin; or every house on one ``home`` node) and fails over to the next.
The platform is one process on one node: an ingest client subscribed to ``pingan/v1/#`` (QoS 1), measuring delivery and latency, and a
separate command client sending signed ``ping`` commands to houses whose first node is another
one (each result comes back through the ingest client). Processes
(``python -m bench.fleet worker|platform ...``) take commands on stdin: ``start`` opens the
measurement window, ``stop`` ends it and prints one JSON report line; a worker's ``watch T P``
waits until every house that lost its session at or after Unix time ``T`` (or is still on port
``P``) is back, subscribed and drained, and prints when. ``bench/fleet_run.py`` runs them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from bench.fleet_house import Counters, House, house_key, rss_kb
from gatewayd.commands.signing import sign


def first_node(i: int, nodes: int, home: int = -1) -> int:
    """House ``i``'s first node: round robin, or ``home`` for every house if it is given."""
    return home if home >= 0 else i % nodes


def gateway_id(i: int) -> str:
    return f"sim-{i:05d}"


def stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str]:
    """Lines from stdin as they come. Read from the fd, not sys.stdin: two lines arriving
    together would leave the second in sys.stdin's buffer, unseen until a third came."""
    lines: asyncio.Queue[str] = asyncio.Queue()
    partial = b""

    def readable() -> None:
        nonlocal partial
        *done, partial = (partial + (os.read(0, 65536) or b"stop\n")).split(b"\n")
        for line in done:
            lines.put_nowait(line.decode().strip())

    loop.add_reader(0, readable)
    return lines


async def worker(ports: list[int], first: int, count: int, speed: float, home: int) -> None:
    loop = asyncio.get_running_loop()
    n = Counters()
    base_rss = rss_kb()
    houses = []
    for i in range(first, first + count):
        k = first_node(i, len(ports), home)
        houses.append(House(gateway_id(i), ports[k:] + ports[:k], loop, n, speed))
    for i, h in enumerate(houses):
        h.connect()
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the CONNACKs in as we go

    async def misc() -> None:
        while True:
            for h in houses:
                h.client.loop_misc()
            await asyncio.sleep(1.0)

    misc_task = loop.create_task(misc())
    while not all(h.subscribed for h in houses):
        await asyncio.sleep(0.05)
    print(json.dumps({"ready": count, "refused": n.connect_failures + n.sub_refused}), flush=True)
    lines = stdin_lines(loop)
    marks: dict[str, Any] = {}  # counts when the window opened (cumulative ones stay whole)
    while (cmd := await lines.get()) != "stop":
        if cmd == "start":
            marks = {"qos0": n.qos0, "qos1": n.qos1, "t": time.monotonic()}
            n.event_ids = []
        elif cmd == "access":  # every house's door used now: four events each
            for h in houses:
                h.door_used()
        elif cmd.startswith("watch "):
            since, port = cmd.split()[1:]
            print(json.dumps(await watch(houses, n, float(since), int(port))), flush=True)
    report = {
        "houses": count, "connected": sum(h.connected for h in houses), "disconnects": n.disconnects,
        "qos0": n.qos0 - marks.get("qos0", 0), "qos1": n.qos1 - marks.get("qos1", 0),
        "unacked": sum(len(h.pending) for h in houses), "failed": n.failed,
        "connect_failures": n.connect_failures, "sub_refused": n.sub_refused,
        "commands": n.commands, "offline_dropped": n.offline_dropped,
        "seconds": time.monotonic() - marks.get("t", time.monotonic()),
        "rss_kb": rss_kb(), "base_rss_kb": base_rss, "event_ids": n.event_ids or [],
    }  # fmt: skip
    misc_task.cancel()
    print(json.dumps(report), flush=True)
    for h in houses:
        h.close()


async def watch(houses: list[House], n: Counters, since: float, port: int) -> dict[str, Any]:
    """After a node was killed at ``since``: until every house that lost its session then (or is
    still on the dead ``port``, not having noticed yet) is connected again, its ``cmd``
    subscription granted and the backlog it came back with acknowledged."""
    deadline = time.monotonic() + 300

    def moved() -> list[House]:
        return [h for h in houses if (h.lost_at or 0) >= since or (h.port == port)]

    before = (n.connect_failures, n.sub_refused)
    while time.monotonic() < deadline:
        hit = moved()
        if all(
            h.connected and h.subscribed and not h.backlog and h.port != port and h.back_at > since
            for h in hit
        ):
            break
        await asyncio.sleep(0.05)
    hit = moved()
    done = [h for h in hit if h.connected and h.subscribed and not h.backlog and h.port != port]
    return {
        "moved": len(hit),
        "done": len(done),
        "back": max((h.back_at for h in done), default=since),
        "subscribed": max((h.subscribed_at for h in done), default=since),
        "drained": max((h.drained_at or h.back_at for h in done), default=since),
        "largest_backlog": max((h.largest_backlog for h in hit), default=0),
        "each_back": [round(h.back_at - since, 2) for h in done],  # for the median
        "each_drained": [round((h.drained_at or h.back_at) - since, 2) for h in done],
        "connect_failures": n.connect_failures - before[0],
        "sub_refused": n.sub_refused - before[1],
    }


class Platform:
    """The platform's side: ingest (everything, QoS 1) and a separate command sender, both on
    the platform's node; commands go to the houses in ``targets``."""

    def __init__(self, port: int, targets: list[str], rate: float, nodes: int, home: int) -> None:
        self.targets, self.rate, self.nodes, self.home = targets, rate, nodes, home
        self.event_ids: set[str] = set()
        self.events_from = [0] * nodes  # events received, by the sender's first node
        self.answered_from = [0] * nodes  # commands answered, by the house's first node
        self.codes: dict[str, int] = {}  # command results by code
        self.lock = threading.Lock()
        self.got: dict[str, int] = {}
        self.lat: list[float] = []
        self.sent: dict[str, float] = {}  # command id -> when sent
        self.answered: dict[str, float] = {}  # command id -> round trip
        self.to: dict[str, str] = {}  # command id -> house
        self.duplicates = self.sub_refused = self.send_failed = 0
        self.counting = threading.Event()
        self.sending = threading.Event()
        self.ingest = self._client("platform-ingest", port)
        self.ingest.on_message = self._on_message
        self.granted = threading.Event()
        self.ingest.on_subscribe = self._on_subscribe
        self.ingest.on_connect = lambda c, *_a: c.subscribe("pingan/v1/#", qos=1)
        self.sender = self._client("platform-cmd", port)

    @staticmethod
    def _client(cid: str, port: int) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        c.reconnect_delay_set(1, 4)
        c.connect_async("127.0.0.1", port, keepalive=30)
        c.loop_start()
        return c

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, p: Any) -> None:
        if any(r.is_failure for r in reasons):  # NATS, its consumer not made in time: again
            self.sub_refused += 1
            threading.Timer(0.5, client.subscribe, ("pingan/v1/#",), {"qos": 1}).start()
        else:
            self.granted.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not self.counting.is_set():
            return
        parts = msg.topic.split("/")
        kind = parts[3] if len(parts) > 3 else "?"
        now = time.time()
        with self.lock:
            if kind == "cmd" and parts[-1] != "result":
                return  # the platform's own command, seen by its '#' subscription
            self.got[kind] = self.got.get(kind, 0) + 1
            if kind == "cmd":
                cid = json.loads(msg.payload).get("id")
                if cid in self.answered:
                    self.duplicates += 1
                elif cid in self.sent:
                    self.answered[cid] = now - self.sent[cid]
                    self.answered_from[first_node(int(parts[2][4:]), self.nodes, self.home)] += 1
                    code = json.loads(msg.payload).get("code")
                    self.codes[code] = self.codes.get(code, 0) + 1
                return
            if kind in ("events", "telemetry"):
                body = json.loads(msg.payload)
                self.lat.append(now - body["ts"])
                if kind == "events":
                    self.event_ids.add(body["id"])
                    self.events_from[first_node(int(parts[2][4:]), self.nodes, self.home)] += 1

    def send_commands(self) -> None:
        houses = itertools.cycle(self.targets)  # in turn: every node gets its share
        while self.sending.is_set():
            gid = next(houses)
            now = time.time()
            cid = uuid.uuid4().hex
            cmd = {"id": cid, "device": gid, "action": "ping", "args": {},
                   "user": "platform", "iat": int(now), "exp": int(now) + 60}  # fmt: skip
            with self.lock:
                self.sent[cid] = now
                self.to[cid] = gid
            info = self.sender.publish(
                f"pingan/v1/{gid}/cmd", json.dumps(sign(house_key(gid), cmd)), qos=1
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.send_failed += 1
            time.sleep(1 / self.rate)

    def wait_received(self, published: int) -> None:
        deadline = time.monotonic() + 10
        time.sleep(0.5)
        while time.monotonic() < deadline:
            with self.lock:
                if sum(self.got.values()) >= published and len(self.answered) >= len(self.sent):
                    return
            time.sleep(0.1)

    def report(self) -> dict[str, Any]:
        with self.lock:
            s, rtt = sorted(self.lat), sorted(self.answered.values())

            def pct(v: list[float], p: int) -> float | None:
                return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else None

            return {
                "received": self.got,
                "latency": {"p50": pct(s, 50), "p99": pct(s, 99)},
                "commands": {
                    "sent": len(self.sent), "answered": len(self.answered),
                    "duplicates": self.duplicates, "failed": self.send_failed,
                    "p50": pct(rtt, 50), "p99": pct(rtt, 99), "codes": self.codes,
                    "answered_from": self.answered_from,
                    "unanswered": [  # a few, for a look: the house and when it was sent
                        (self.to[c], t) for c, t in self.sent.items() if c not in self.answered
                    ][:10],
                },
                "event_ids": sorted(self.event_ids), "events_from": self.events_from,
                "sub_refused": self.sub_refused, "rss_kb": rss_kb(),
            }  # fmt: skip


def platform(port: int, houses: int, nodes: int, node: int, rate: float, home: int) -> None:
    targets = [
        gateway_id(i) for i in range(houses) if nodes == 1 or first_node(i, nodes, home) != node
    ]
    p = Platform(port, targets, rate, nodes, home)
    deadline = time.monotonic() + 120
    while not p.granted.wait(10):
        # A SUBSCRIBE a stalling node never answered: asked again while the session is up.
        if time.monotonic() > deadline:
            raise SystemExit(
                f"platform: no granted subscription on port {port} in 120 s (connected: "
                f"{p.ingest.is_connected()}, refused: {p.sub_refused})"
            )
        if p.ingest.is_connected():
            p.ingest.subscribe("pingan/v1/#", qos=1)
    print(json.dumps({"ready": 1}), flush=True)
    sender: threading.Thread | None = None
    for line in sys.stdin:
        if line.strip() == "start":
            p.counting.set()
            if rate > 0 and targets:
                p.sending.set()
                sender = threading.Thread(target=p.send_commands, daemon=True)
                sender.start()
        elif line.startswith(("quiet", "stop")):  # quiet: no more commands, houses still up
            p.sending.clear()
            if sender is not None:
                sender.join()
        if line.startswith("stop"):
            # What the houses published before "stop" is still on its way: until as many
            # messages have come (some counted may predate "start"), or 10 s.
            p.wait_received(int(line.split()[1]) if len(line.split()) > 1 else 0)
            print(json.dumps(p.report()), flush=True)
            break
    for c in (p.ingest, p.sender):
        c.disconnect()
        c.loop_stop()


def main(argv: list[str]) -> None:
    role = argv[0]
    if role == "platform":
        port, houses, nodes, node = (int(a) for a in argv[1:5])
        platform(port, houses, nodes, node, float(argv[5]), int(argv[6]))
    else:
        ports = [int(p) for p in argv[1].split(",")]
        first, count, speed, home = int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5])
        asyncio.run(worker(ports, first, count, speed, home))


if __name__ == "__main__":
    main(sys.argv[1:])
