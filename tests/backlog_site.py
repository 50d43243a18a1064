"""A house with a backlog, for the critical lane's end-to-end test and benchmark (issue 14,
"fire first on the wire").

- ``BACKLOG``: a plugin driver that, each time its trigger file appears, emits a burst of
  warning and info events and telemetry readings (what a house offline for a while piles up),
  then renames the file ``….done``;
- ``persistent_broker``: mosquitto that keeps its sessions across a restart, and ``Platform``:
  the platform's subscriber with a persistent session on it. Whoever reconnects first when the
  broker returns, the gateway or the platform, the platform misses nothing and sees it in the
  broker's order;
- ``scrape``/``sample``: the daemon's metrics endpoint, parsed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client.parser import text_string_to_metric_families

from firmware_stubs.broker import Broker
from tests.harness import Msg, install_plugin, wait_on

BACKLOG = '''
import asyncio, json, os
from gatewayd.driver import Driver
from gatewayd.model import Event
from gatewayd.schema import Str

class Backlog(Driver):
    """Polls `trigger`: {"events": n, "telemetry": m} there makes n events (warning and info
    in turn, over devices load-0, load-1, load-2) and m telemetry readings, numbered per burst."""
    name = "backlog"
    bus_schema = {"trigger": Str()}

    async def run(self) -> None:
        trigger = self.bus.settings["trigger"]
        burst = 0
        while True:
            if os.path.exists(trigger):
                with open(trigger) as f:
                    ask = json.load(f)
                for i in range(ask["events"]):
                    sev = ("warning", "info")[i % 2]
                    data = {"burst": burst, "n": i}
                    self.ctx.emit(Event(f"load-{i % 3}", f"load.{sev}", sev, data))
                for i in range(ask["telemetry"]):
                    self.ctx.publish_telemetry(f"load-{i % 3}", {"burst": burst, "n": i})
                os.replace(trigger, trigger + ".done")
                burst += 1
            await asyncio.sleep(0.02)
'''


def backlog_bus(trigger: Path) -> str:
    """The ``[[buses]]`` entry of the backlog driver."""
    return f'[[buses]]\nname = "backlog"\ndriver = "backlog"\ntrigger = "{trigger}"\n'


def install_backlog(where: Path) -> dict[str, str]:
    """Install the plugin; the environment a daemon needs to find it."""
    return install_plugin(where, "backlog_plugin", BACKLOG, {"backlog": "Backlog"})


def pile_up(trigger: Path, events: int, telemetry: int, timeout: float = 30.0) -> None:
    """Ask for a burst and wait until the driver has emitted all of it."""
    done = Path(f"{trigger}.done")
    done.unlink(missing_ok=True)
    tmp = trigger.with_suffix(".tmp")
    tmp.write_text(json.dumps({"events": events, "telemetry": telemetry}))
    os.replace(tmp, trigger)  # whole, never half-written
    deadline = time.monotonic() + timeout
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the backlog driver did not emit its burst")
        time.sleep(0.02)


def persistent_broker(workdir: Path) -> Broker:
    """mosquitto saving its sessions in ``workdir`` on the way down and restoring them on the
    way up. Started as root it would drop to the ``mosquitto`` user, who cannot write in a
    private temporary directory: it stays root (the option means nothing to anyone else)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = f"persistence true\npersistence_location {workdir}/\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    return Broker(workdir, extra_conf=conf)


class Platform:
    """The platform's subscriber to one gateway's topics (``root/#``), QoS 1, with a session
    that outlives the broker's restarts (``clean_session`` off); reconnects within 0.1 s.
    Records every message with its arrival (``time.monotonic()``, first thing in the callback)."""

    def __init__(self, port: int, root: str, client_id: str = "platform") -> None:
        self.root = root
        self.cond = threading.Condition()
        self.messages: list[Msg] = []
        self.backlog = 0  # messages of the backlog driver's devices (load-*) received
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.02, 0.1)
        c.on_connect = lambda client, *_a: client.subscribe(f"{root}/#", 1)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect("127.0.0.1", port)
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway
        c.loop_start()
        self.client = c
        if not subscribed.wait(5):
            raise RuntimeError("the platform could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        at = time.monotonic()
        with self.cond:
            self.messages.append(Msg(msg.topic, msg.payload, bool(msg.retain), at))
            self.backlog += "/load-" in msg.topic
            self.cond.notify_all()

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        """``pred()``'s first true value (called under the lock, at each message)."""
        return wait_on(self.cond, pred, timeout, what)

    def first(
        self, topic: str, match: Callable[[Any], bool], timeout: float, what: str, start: int = 0
    ) -> tuple[int, Msg]:
        """(index, message) of the first live message on ``topic`` from ``start`` on whose JSON
        body ``match``-es; each message is looked at once."""
        seen = start

        def found() -> tuple[int, Msg] | None:
            nonlocal seen
            for i in range(seen, len(self.messages)):
                m = self.messages[i]
                if m.topic == topic and not m.retain and match(m.json()):
                    return i, m
            seen = len(self.messages)
            return None

        return self.wait(found, timeout, what)  # type: ignore[no-any-return]

    def mark(self) -> int:
        with self.cond:
            return len(self.messages)

    def clear(self) -> None:
        with self.cond:
            self.messages.clear()
            self.backlog = 0

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    """One sample of a scrape, None if absent."""
    return scrape(port).get((name, frozenset(labels.items())))
