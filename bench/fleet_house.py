"""One simulated house of the fleet simulator (``bench/fleet.py``): a faithful lightweight
stand-in for gatewayd, not a gatewayd.

One MQTT connection (client id = gateway id, last will = the offline status); on connect the
retained ``status``, ``alarms`` and every device's ``state`` plus the ``cmd`` subscription, asked
again with backoff while the broker refuses it (a NATS cluster does, with a node down); then at
the rates a real house produces (docs/monitoring.md, "Fleet simulator"):

- a charging pile (12 ports, 3 charging): per slow poll (10 s) one telemetry message per active
  port and one for the pile (QoS 0), and its retained state, which moves with the power;
- smoke detectors: an hourly heartbeat each: event (QoS 1), telemetry, retained state;
- the entrance lock: ~50 accesses a day: unlocked, opened, closed, locked (events and state).

A signed ``ping`` command gets its result on ``cmd/result``. Given several broker nodes, a house
moves to the next one when a connection attempt fails or its session is lost, after the gateway's
capped, jittered backoff (``gatewayd.uplink.link``); what it publishes meanwhile waits, as in the
gateway's outbox: QoS 1 in paho's queue, sent on the next node (QoS 0 telemetry is dropped and
counted). Payloads and backoff are the gateway's own code (``Topics``, ``Event.to_json``,
``dumps``, the SRB-433 profile's ``state_update``, ``Backoff``, command ``verify``), so shapes,
sizes and retry timing are the real ones. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import socket
import time
from typing import Any

import paho.mqtt.client as mqtt

from drivers.srb433 import profile as smoke_profile
from gatewayd import __version__
from gatewayd.backoff import Backoff
from gatewayd.commands.signing import verify
from gatewayd.config_schema import ID_PATTERN
from gatewayd.model import Event
from gatewayd.uplink.topics import Topics, dumps

PORTS, CHARGING, DETECTORS = 12, (2, 5, 9), 6
POLL_SECONDS = 10.0  # the modbus driver's slow poll
HEARTBEAT_SECONDS = 3600.0
ACCESS_SECONDS = 86400 / 50
#: A CONNECT with no CONNACK after this long is given up (NATS holds a refused one 4 s).
CONNACK_SECONDS = 10.0
#: gatewayd's uplink leaves Nagle's algorithm on (paho does not set TCP_NODELAY), so a burst
#: (telemetry then state) waits for the broker's delayed ACK: ~40 ms on Linux. The simulator
#: does the same; FLEET_NODELAY=1 shows the difference.
NODELAY = os.environ.get("FLEET_NODELAY") == "1"


def house_key(gid: str) -> bytes:
    """The house's command key, derived so that the platform process knows it too."""
    return hashlib.sha256(f"fleet-command-key/{gid}".encode()).digest()


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Counters:
    """A worker's totals over its houses."""

    def __init__(self) -> None:
        self.qos0 = self.qos1 = self.acked = self.failed = self.connects = self.disconnects = 0
        self.connect_failures = self.sub_refused = self.offline_dropped = self.commands = 0
        self.event_ids: list[str] | None = None  # the ids of events published, while recording


class House:
    """One simulated gateway; its paho client is driven by the worker's event loop.

    ``ports``: the broker nodes, in the order this house tries them (its own node first)."""

    def __init__(
        self,
        gid: str,
        ports: list[int],
        loop: asyncio.AbstractEventLoop,
        n: Counters,
        speed: float,
    ) -> None:
        # Ids as the contract has them: NATS closes a connection whose topic has a '.' or space.
        if not re.fullmatch(ID_PATTERN, gid):
            raise ValueError(f"not a portable gateway id: {gid!r}")
        self.gid, self.nodes, self.loop, self.n, self.speed = gid, ports, loop, n, speed
        self.at = 0  # index in ``nodes`` of the node in use or tried next
        self.topics = Topics(f"pingan/v1/{gid}")
        self.key = house_key(gid)
        self.started = time.time()
        self.rng = random.Random(gid)
        self.backoff = Backoff(1.0, 60.0)
        self.sub_backoff = Backoff(1.0, 60.0)
        self.connected = self.subscribed = self.running = self.closing = False
        self.attempt = 0  # numbers connection attempts, so a stale CONNACK timer does nothing
        self.pending: set[int] = set()  # QoS 1 mids not yet acknowledged
        # What a (re)connect must see acknowledged before the house counts as drained: the
        # queue it came back with and its retained burst.
        self.backlog: set[int] = set()
        self.lost_at: float | None = None  # when its last session ended
        self.back_at = self.subscribed_at = self.drained_at = 0.0
        self.largest_backlog = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gid, clean_session=True)
        c.max_inflight_messages_set(100)
        c.will_set(self.topics.status, self.status(False), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = lambda _c, _u, sock: self.loop.add_reader(sock, c.loop_read)
        c.on_socket_close = self._forget_socket
        c.on_socket_register_write = lambda _c, _u, sock: self.loop.add_writer(sock, c.loop_write)
        c.on_socket_unregister_write = lambda _c, _u, sock: self.loop.remove_writer(sock)
        self.client = c
        self.ports = [
            {"port": p, "state": "charging" if p in CHARGING else "idle", "relay": p in CHARGING,
             "power_w": 180 + 10 * p if p in CHARGING else 0, "temperature_c": 31.5, "fault": "none"}
            for p in range(1, PORTS + 1)
        ]  # fmt: skip

    @property
    def port(self) -> int:
        return self.nodes[self.at]

    def status(self, online: bool) -> bytes:
        body: dict[str, Any] = {"online": online, "version": __version__, "started": self.started}
        if online:
            body.update(fire_mode=False, site=f"{self.gid} 号")
        return dumps(body)

    # -- connection, as gatewayd.uplink.link does it -----------------------------------------

    def connect(self) -> None:
        self.attempt += 1
        attempt = self.attempt
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except OSError:  # the node is down: the next one, after the backoff
            self.n.connect_failures += 1
            self._retry()
            return
        sock = self.client.socket()
        if NODELAY and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop.call_later(CONNACK_SECONDS, self._connack_timeout, attempt)

    def _connack_timeout(self, attempt: int) -> None:
        if attempt == self.attempt and not self.connected and not self.closing:
            self.client.disconnect()  # on_disconnect moves on to the next node

    def _retry(self) -> None:
        if self.closing:
            return
        self.at = (self.at + 1) % len(self.nodes)
        self.loop.call_later(self.backoff.next(), self.connect)

    def _forget_socket(self, _c: Any, _u: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)

    def close(self) -> None:
        self.closing = True
        self.client.disconnect()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return  # the broker closes the connection: on_disconnect moves on
        self.connected = True
        self.backoff.reset()
        self.back_at = time.time()
        self.n.connects += 1
        self.drained_at = 0.0
        self.subscribe()
        self.publish(self.topics.status, self.status(True), retain=True)
        self.publish(self.topics.alarms, dumps({"ts": time.time(), "active": []}), retain=True)
        self.pile_state()
        for d in range(1, DETECTORS + 1):
            state = {"last_seen": time.time(), "alarm": "none", "battery_mv": 3000}
            self.publish(self.topics.state(f"smoke-{d}"), dumps({**state, "ts": time.time()}), retain=True)  # fmt: skip
        lock = {"lock": "locked", "door": "closed", "battery_mv": 5900, "connected": True,
                "escape_route": True}  # fmt: skip
        self.publish(
            self.topics.state("door-main"), dumps({**lock, "ts": time.time()}), retain=True
        )
        self.backlog = set(self.pending)  # what it came back with, and the retained burst
        self.largest_backlog = max(self.largest_backlog, len(self.backlog))
        if not self.running:  # the house's own clock runs across reconnects, as a gateway's
            self.running = True
            self.schedule(self.poll, self.rng.uniform(0, POLL_SECONDS))
            for d in range(1, DETECTORS + 1):
                self.schedule(lambda d=d: self.heartbeat(d), self.rng.uniform(0, HEARTBEAT_SECONDS))
            self.schedule(self.access, self.rng.expovariate(1 / ACCESS_SECONDS))

    def _on_disconnect(self, *args: Any) -> None:
        if self.closing:
            self.connected = False
            return
        if self.connected:
            self.n.disconnects += 1
            self.lost_at = time.time()
        else:
            self.n.connect_failures += 1  # refused, or closed before CONNACK (a NATS stall)
        self.connected = self.subscribed = False
        self._retry()

    def subscribe(self) -> None:
        if self.connected:
            self.client.subscribe(self.topics.cmd, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, p: Any) -> None:
        if any(r.is_failure for r in reasons):
            # NATS refuses a QoS 1 subscription while it cannot create its JetStream consumer
            # within 4 s: asked again, as the gateway's link does.
            self.n.sub_refused += 1
            self.loop.call_later(self.sub_backoff.next(), self.subscribe)
            return
        self.sub_backoff.reset()
        self.subscribed = True
        self.subscribed_at = time.time()

    def _on_publish(self, client: Any, userdata: Any, mid: int, *args: Any) -> None:
        self.n.acked += 1  # QoS 1: PUBACK received; QoS 0: written to the socket
        self.pending.discard(mid)
        if mid in self.backlog:
            self.backlog.discard(mid)
            if not self.backlog:
                self.drained_at = time.time()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """A command: a signed ``ping`` is answered ``ok``, anything else refused, the way the
        gateway's contract says (shared/contract/mqtt.md)."""
        t0 = time.perf_counter()
        try:
            cmd = json.loads(msg.payload)
        except ValueError:
            cmd = None
        if not isinstance(cmd, dict):
            code, cid = "invalid", None
        else:
            cid = cmd.get("id")
            if not verify(self.key, cmd):
                code = "bad_signature"
            elif not isinstance(cmd.get("exp"), (int, float)) or cmd["exp"] < time.time():
                code = "expired"
            else:
                code = "ok" if cmd.get("action") == "ping" else "unsupported"
        self.n.commands += 1
        ms = round(1000 * (time.perf_counter() - t0), 2)
        result = {"id": cid, "ok": code == "ok", "code": code, "ms": ms}
        self.publish(self.topics.cmd_result, dumps(result))

    # -- traffic ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: queued by paho, sent when a session is up again (the outbox's job)
            self.n.qos1 += 1
            self.pending.add(info.mid)
            if not self.connected:
                self.backlog.add(info.mid)
        elif info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.n.offline_dropped += 1
        elif info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.n.failed += 1
        else:
            self.n.qos0 += 1

    def event(self, device: str, type_: str, data: dict[str, Any], severity: str = "info") -> Event:
        e = Event(device, type_, severity, data)  # type: ignore[arg-type]
        if self.n.event_ids is not None:
            self.n.event_ids.append(e.id)
        self.publish(self.topics.event(device), dumps(e.to_json()))
        return e

    def schedule(self, fn: Any, delay: float) -> None:
        self.loop.call_later(delay / self.speed, fn)

    def poll(self) -> None:
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
        if not self.closing:
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
        if not self.closing:
            self.schedule(lambda: self.heartbeat(d), HEARTBEAT_SECONDS)

    def access(self) -> None:
        self.door_used()
        if not self.closing:
            self.schedule(self.access, self.rng.expovariate(1 / ACCESS_SECONDS))

    def door_used(self) -> None:
        """Someone comes in: unlocked, opened, closed, locked (four events)."""
        st = self.topics.state("door-main")
        self.event("door-main", "door.unlocked", {"method": "card", "user": 302, "counter": 1})
        self.publish(st, dumps({"lock": "unlocked", "ts": time.time()}), retain=True)
        for what, door in (("opened", "open"), ("closed", "closed")):
            self.event("door-main", f"door.{what}", {"counter": 1})
            self.publish(st, dumps({"door": door, "ts": time.time()}), retain=True)
        self.event("door-main", "door.locked", {"method": "auto_relock", "counter": 1})
        self.publish(st, dumps({"lock": "locked", "ts": time.time()}), retain=True)
