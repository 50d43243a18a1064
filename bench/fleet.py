"""Fleet simulator: many houses publishing exactly what a gateway publishes, against one broker.

A simulated house is a faithful lightweight stand-in for gatewayd, not a gatewayd: one MQTT
connection (client id = gateway id, last will = the offline status), on connect the retained
``status``, ``alarms`` and every device's ``state`` plus the ``cmd`` subscription, then at the
rates a real house produces (docs/monitoring.md, "Fleet simulator"):

- a charging pile (12 ports, 3 charging): per slow poll (10 s) one telemetry message per active
  port and one for the pile (QoS 0), and its retained state, which moves with the power;
- smoke detectors: an hourly heartbeat each: event (QoS 1), telemetry, retained state;
- the entrance lock: ~50 accesses a day: unlocked, opened, closed, locked (events and state).

Payloads are built with the gateway's own code (``Topics``, ``Event.to_json``, ``dumps``, the
SRB-433 profile's ``state_update``), so their shape and size are the real ones. Traffic goes to
127.0.0.1 only. Processes (``python -m bench.fleet worker|subscriber``) take commands on stdin:
``start`` opens the measurement window, ``stop`` ends it and prints one JSON report line.
``bench/bench_fleet.py`` runs the broker, the platform's subscriber and the workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from drivers.srb433 import profile as smoke_profile
from gatewayd import __version__
from gatewayd.model import Event
from gatewayd.uplink.topics import Topics, dumps

PORTS, CHARGING, DETECTORS = 12, (2, 5, 9), 6
POLL_SECONDS = 10.0  # the modbus driver's slow poll
HEARTBEAT_SECONDS = 3600.0
ACCESS_SECONDS = 86400 / 50
#: gatewayd's uplink leaves Nagle's algorithm on (paho does not set TCP_NODELAY), so a burst
#: (telemetry then state) waits for the broker's delayed ACK: ~40 ms on Linux. The simulator
#: does the same; FLEET_NODELAY=1 shows the difference.
NODELAY = os.environ.get("FLEET_NODELAY") == "1"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Counters:
    def __init__(self) -> None:
        self.qos0 = self.qos1 = self.acked = self.failed = self.connects = self.disconnects = 0


class House:
    """One simulated gateway; its paho client is driven by the worker's event loop."""

    def __init__(
        self, gid: str, loop: asyncio.AbstractEventLoop, n: Counters, speed: float
    ) -> None:
        self.gid, self.loop, self.n, self.speed = gid, loop, n, speed
        self.topics = Topics(f"pingan/v1/{gid}")
        self.started = time.time()
        self.rng = random.Random(gid)
        self.fd = -1
        self.connected = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gid, clean_session=True)
        c.max_inflight_messages_set(100)
        c.will_set(self.topics.status, self.status(False), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        self.ports = [
            {"port": p, "state": "charging" if p in CHARGING else "idle", "relay": p in CHARGING,
             "power_w": 180 + 10 * p if p in CHARGING else 0, "temperature_c": 31.5, "fault": "none"}
            for p in range(1, PORTS + 1)
        ]  # fmt: skip

    def status(self, online: bool) -> bytes:
        body: dict[str, Any] = {"online": online, "version": __version__, "started": self.started}
        if online:
            body.update(fire_mode=False, site=f"{self.gid} 号")
        return dumps(body)

    # -- connection, as gatewayd.uplink.link does it -----------------------------------------

    def connect(self, port: int) -> None:
        self.client.connect("127.0.0.1", port, keepalive=30)
        sock = self.client.socket()
        assert sock is not None
        if NODELAY:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = sock.fileno()
        c = self.client
        c.on_socket_register_write = lambda *_: self.loop.add_writer(self.fd, c.loop_write)
        c.on_socket_unregister_write = lambda *_: self.loop.remove_writer(self.fd)
        self.loop.add_reader(self.fd, c.loop_read)
        if c.want_write():
            self.loop.add_writer(self.fd, c.loop_write)

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
        self.client.disconnect()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        self.connected = True
        self.n.connects += 1
        client.subscribe(self.topics.cmd, qos=1)
        self.publish(self.topics.status, self.status(True), retain=True)
        self.publish(self.topics.alarms, dumps({"ts": time.time(), "active": []}), retain=True)
        self.pile_state()
        for d in range(1, DETECTORS + 1):
            self.publish(
                self.topics.state(f"smoke-{d}"),
                dumps(
                    {
                        "last_seen": time.time(),
                        "alarm": "none",
                        "battery_mv": 3000,
                        "ts": time.time(),
                    }
                ),
                retain=True,
            )
        lock = {
            "lock": "locked",
            "door": "closed",
            "battery_mv": 5900,
            "connected": True,
            "escape_route": True,
        }
        self.publish(
            self.topics.state("door-main"), dumps({**lock, "ts": time.time()}), retain=True
        )
        self.schedule(self.poll, self.rng.uniform(0, POLL_SECONDS))
        for d in range(1, DETECTORS + 1):
            self.schedule(lambda d=d: self.heartbeat(d), self.rng.uniform(0, HEARTBEAT_SECONDS))
        self.schedule(self.access, self.rng.expovariate(1 / ACCESS_SECONDS))

    def _on_disconnect(self, *args: Any) -> None:
        if self.connected:
            self.n.disconnects += 1
        self.connected = False

    def _on_publish(self, *args: Any) -> None:
        self.n.acked += 1  # QoS 1: PUBACK received; QoS 0: written to the socket

    # -- traffic ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self.client.publish(topic, payload, qos=qos, retain=retain).rc != mqtt.MQTT_ERR_SUCCESS:
            self.n.failed += 1
        elif qos:
            self.n.qos1 += 1
        else:
            self.n.qos0 += 1

    def event(self, device: str, type_: str, data: dict[str, Any], severity: str = "info") -> Event:
        e = Event(device, type_, severity, data)  # type: ignore[arg-type]
        self.publish(self.topics.event(device), dumps(e.to_json()))
        return e

    def schedule(self, fn: Any, delay: float) -> None:
        self.loop.call_later(delay / self.speed, fn)

    def poll(self) -> None:
        if self.connected:
            now = time.time()
            for p in self.ports:
                if p["state"] == "charging":
                    p["power_w"] += self.rng.choice((-6, 0, 6))
                    values = {
                        "port": p["port"],
                        "voltage_v": 229.8,
                        "current_a": round(p["power_w"] / 229.8, 2),
                        "power_w": p["power_w"],
                        "energy_wh": 310,
                        "temperature_c": 31.5,
                    }
                    self.publish(
                        self.topics.telemetry("pile-1"), dumps({"ts": now, "values": values}), qos=0
                    )
            pile = {
                "cabinet_c": 30.5,
                "mains_v": 229.8,
                "total_power_w": sum(p["power_w"] for p in self.ports),
            }
            self.publish(self.topics.telemetry("pile-1"), dumps({"ts": now, "values": pile}), qos=0)
            self.pile_state()
        self.schedule(self.poll, POLL_SECONDS)

    def pile_state(self) -> None:
        state = {
            "online": True,
            "unit": 1,
            "profile": "ebc",
            "port_count": PORTS,
            "ports": self.ports,
            "status_bits": 0,
            "status": [],
            "firmware": "2.7",
            "cabinet_c": 30.5,
            "mains_v": 229.8,
            "total_power_w": sum(p["power_w"] for p in self.ports),
            "ts": time.time(),
        }
        self.publish(self.topics.state("pile-1"), dumps(state), retain=True)

    def heartbeat(self, d: int) -> None:
        if self.connected:
            dev = f"smoke-{d}"
            e = self.event(
                dev,
                "smoke.heartbeat",
                {"address": f"1A2B3C{d:02X}", "seq": 1, "battery_mv": 3000, "rssi_dbm": -60},
            )
            self.publish(
                self.topics.telemetry(dev),
                dumps({"ts": e.ts, "values": {"battery_mv": 3000, "rssi_dbm": -60}}),
                qos=0,
            )
            self.publish(
                self.topics.state(dev),
                dumps({**smoke_profile.state_update(e), "ts": e.ts}),
                retain=True,
            )
        self.schedule(lambda: self.heartbeat(d), HEARTBEAT_SECONDS)

    def access(self) -> None:
        if self.connected:
            st = self.topics.state("door-main")
            self.event("door-main", "door.unlocked", {"method": "card", "user": 302, "counter": 1})
            self.publish(st, dumps({"lock": "unlocked", "ts": time.time()}), retain=True)
            for what, door in (("opened", "open"), ("closed", "closed")):
                self.event("door-main", f"door.{what}", {"counter": 1})
                self.publish(st, dumps({"door": door, "ts": time.time()}), retain=True)
            self.event("door-main", "door.locked", {"method": "auto_relock", "counter": 1})
            self.publish(st, dumps({"lock": "locked", "ts": time.time()}), retain=True)
        self.schedule(self.access, self.rng.expovariate(1 / ACCESS_SECONDS))


async def worker(port: int, first: int, count: int, speed: float) -> None:
    loop = asyncio.get_running_loop()
    n = Counters()
    base_rss = rss_kb()
    houses = [House(f"sim-{i:05d}", loop, n, speed) for i in range(first, first + count)]
    for i, h in enumerate(houses):
        h.connect(port)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the CONNACKs in as we go

    async def misc() -> None:
        while True:
            for h in houses:
                h.client.loop_misc()
            await asyncio.sleep(1.0)

    misc_task = loop.create_task(misc())
    while n.connects < count:
        await asyncio.sleep(0.05)
    print(json.dumps({"ready": count}), flush=True)
    lines: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline().strip()))
    marks: dict[str, Any] = {}  # counts when the window opened (cumulative ones stay whole)
    while (cmd := await lines.get()) != "stop":
        if cmd == "start":
            marks = {"qos0": n.qos0, "qos1": n.qos1, "t": time.monotonic()}
    report = {
        "houses": count, "connected": sum(h.connected for h in houses), "disconnects": n.disconnects,
        "qos0": n.qos0 - marks.get("qos0", 0), "qos1": n.qos1 - marks.get("qos1", 0),
        "unacked": n.qos0 + n.qos1 - n.acked, "failed": n.failed,
        "seconds": time.monotonic() - marks.get("t", time.monotonic()),
        "rss_kb": rss_kb(), "base_rss_kb": base_rss,
    }  # fmt: skip
    misc_task.cancel()
    print(json.dumps(report), flush=True)
    for h in houses:
        h.close()


def subscriber(port: int) -> None:
    """The platform's side: one client taking everything, measuring delivery and latency."""
    lock = threading.Lock()
    got: dict[str, int] = {}
    lat: list[float] = []
    counting = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if not counting.is_set():
            return
        kind = msg.topic.split("/")[3] if msg.topic.count("/") >= 3 else "?"
        with lock:
            got[kind] = got.get(kind, 0) + 1
            if kind in ("events", "telemetry"):
                lat.append(time.time() - json.loads(msg.payload)["ts"])

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="platform", clean_session=True)
    c.on_message = on_message
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port, keepalive=30)
    c.subscribe("pingan/v1/#", qos=1)
    c.loop_start()
    subscribed.wait(10)
    print(json.dumps({"ready": 1}), flush=True)
    for line in sys.stdin:
        if line.strip() == "start":
            counting.set()
        elif line.strip() == "stop":
            time.sleep(1.0)  # what was published before "stop" is still on its way
            with lock:
                s = sorted(lat)
                pct = {
                    f"p{p}": s[min(len(s) - 1, int(p / 100 * len(s)))] if s else None
                    for p in (50, 99)
                }
                print(json.dumps({"received": got, "latency": pct, "rss_kb": rss_kb()}), flush=True)
            break
    c.loop_stop()
    c.disconnect()


def main(argv: list[str]) -> None:
    role, port = argv[0], int(argv[1])
    if role == "subscriber":
        subscriber(port)
    else:
        first, count, speed = int(argv[2]), int(argv[3]), float(argv[4])
        asyncio.run(worker(port, first, count, speed))


if __name__ == "__main__":
    main(sys.argv[1:])
