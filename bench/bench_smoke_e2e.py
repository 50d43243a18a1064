"""Smoke alarm end to end (issue 3): the last byte of an alarm frame written on the receiver's
pty → the ``smoke.alarm`` event received by a subscriber on the local broker, beside a bare MQTT
publish → receive of a payload of the same size through the same broker, in the same run.

The receiver emulator runs in this process and the subscriber too, so both ends of each
latency are ``time.monotonic()`` of one process: taken once the frame is written, and first
thing in the subscriber's ``on_message``. Gateway and bare trials alternate, so both see the
same machine noise.

Every trial is the first alarm of a house at rest: a detector (eight take turns) goes into
alarm, which raises its ``smoke.alarm`` alarm and puts the gateway in fire mode (the fire rule;
this site has no piles or locks, so the linkage has nothing to carry out). Between trials the
detector clears and a signed ``fire_reset`` ends fire mode; without that, later alarms would
skip entering fire mode, the heavier path. One copy of each frame is written: the radio's two
repeats only meet the deduplicator after the event has gone.

Run alone: ``python -m bench.bench_smoke_e2e [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

from bench.common import percentile, row, start_daemon, write_site
from drivers.srb433.codec import Frame, encode
from firmware_stubs.broker import Broker
from firmware_stubs.srb433 import ReceiverEmulator
from gatewayd.commands.signing import sign
from tests.harness import wait_on

T = TypeVar("T")
ROOT = "pingan/v1/gw-bench"  # bench.common.write_site names the gateway gw-bench
DETECTORS = {f"smoke-{i}": 0x1A2B3C40 + i for i in range(1, 9)}
BARE = "bench/bare/alarm"
WARM_UP = 5


class Watch:
    """A paho subscriber on its own thread keeping what the benchmarks wait for: the latest
    body per topic, command results by id, and events as (monotonic arrival, topic, body)."""

    def __init__(self, port: int, topics: list[str], events: Callable[[str], bool]) -> None:
        self.cond = threading.Condition()
        self.latest: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.events: list[tuple[float, str, Any]] = []
        self._is_event = events
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        if not subscribed.wait(5):
            raise RuntimeError("watch could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        at = time.monotonic()  # first: the arrival is what the latency ends on
        body = json.loads(msg.payload)
        with self.cond:
            if msg.topic.endswith("/cmd/result"):
                self.results[body["id"]] = body
            elif self._is_event(msg.topic):
                self.events.append((at, msg.topic, body))
            else:
                self.latest[msg.topic] = body
            self.cond.notify_all()

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_on(self.cond, pred, timeout, what)

    def command(self, key: bytes, device: str, action: str, timeout: float = 10.0) -> Any:
        now = time.time()
        cid = os.urandom(8).hex()
        body = {"id": cid, "device": device, "action": action, "args": {}, "user": "bench"}
        cmd = sign(key, {**body, "iat": now, "exp": now + 30})
        self.client.publish(f"{ROOT}/cmd", json.dumps(cmd), qos=1)
        return self.wait(lambda: self.results.get(cid), timeout, f"result of {action}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Receiver:
    """The SRB-433 emulator on its own event loop in a thread; frames written on its pty."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.rx = ReceiverEmulator(spacing=0.05)
        self.thread = threading.Thread(target=self.loop.run_forever, name="srb433", daemon=True)
        self.seq = dict.fromkeys(DETECTORS.values(), 0)

    def __enter__(self) -> Receiver:
        self.thread.start()
        self.call(self.rx.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.rx.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def radio(self, address: int, type_: int, payload: bytes = b"") -> float:
        """One frame, a new SEQ; the monotonic time its last byte was written."""
        self.seq[address] = (self.seq[address] + 1) & 0xFF
        data = encode(Frame(type_, address, self.seq[address], payload))
        return self.call(write_timed(self.rx, data))


async def write_timed(rx: ReceiverEmulator, data: bytes) -> float:
    """Write one frame on the receiver's pty (on its loop); the monotonic time it went."""
    dropped = rx.dropped
    rx.write(data)
    at = time.monotonic()
    if rx.dropped != dropped:
        raise RuntimeError("the frame could not be written")
    return at


def config_body(path: str) -> str:
    out = [f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{path}"\nping_seconds = 5\n']
    for dev, address in DETECTORS.items():
        out.append(
            f'[[devices]]\nid = "{dev}"\nkind = "smoke"\nbus = "smoke-rx"\n'
            f'address = "{address:08X}"\nroom = "{dev[-1]}0{dev[-1]}"\n'
        )
    return "\n".join(out)


def _arrival(watch: Watch, topic: str, match: Any, what: str) -> tuple[float, Any]:
    """(monotonic arrival, body) of the first message on ``topic`` that ``match``-es."""

    def found() -> tuple[float, Any] | None:
        return next(((at, b) for at, t, b in watch.events if t == topic and match(b)), None)

    return watch.wait(found, 10, what)  # type: ignore[no-any-return]


class Trials:
    def __init__(self, watch: Watch, receiver: Receiver, key: bytes, port: int) -> None:
        self.watch, self.receiver, self.key = watch, receiver, key
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()
        self.size = 200  # the event's size, once one has been seen

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()

    def status(self, fire_mode: bool) -> None:
        self.watch.wait(
            lambda: self.watch.latest.get(f"{ROOT}/status", {}).get("fire_mode") is fire_mode,
            10,
            f"status fire_mode {fire_mode}",
        )

    def gateway(self, dev: str) -> float:
        t0 = self.receiver.radio(DETECTORS[dev], 0x01, bytes((random.randrange(60, 250),)))
        topic = f"{ROOT}/events/{dev}"
        t1, body = _arrival(self.watch, topic, lambda b: b["type"] == "smoke.alarm", "smoke.alarm")
        self.size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        return t1 - t0

    def bare(self, n: int) -> float:
        head = json.dumps({"id": n, "pad": ""})
        payload = json.dumps({"id": n, "pad": "x" * max(0, self.size - len(head))})
        t0 = time.monotonic()
        self.pub.publish(BARE, payload, qos=1)
        t1, _body = _arrival(self.watch, BARE, lambda b: b["id"] == n, "the bare message")
        return t1 - t0

    def reset(self, dev: str) -> None:
        self.status(True)
        self.receiver.radio(DETECTORS[dev], 0x02)
        topic = f"{ROOT}/events/{dev}"
        _arrival(self.watch, topic, lambda b: b["type"] == "smoke.cleared", "smoke.cleared")
        result = self.watch.command(self.key, "gw-bench", "fire_reset")
        if result["code"] != "ok":
            raise RuntimeError(f"fire_reset refused: {result}")
        self.status(False)

    def run(self, n: int) -> tuple[list[float], list[float]]:
        gw: list[float] = []
        bare: list[float] = []
        devices = list(DETECTORS)
        for i in range(n + WARM_UP):
            dev = devices[i % len(devices)]
            with self.watch.cond:
                self.watch.events.clear()
            if i % 2:  # alternate which goes first
                tb, tg = self.bare(i), self.gateway(dev)
            else:
                tg, tb = self.gateway(dev), self.bare(i)
            self.reset(dev)
            if i >= WARM_UP:
                gw.append(tg)
                bare.append(tb)
            time.sleep(random.uniform(0.01, 0.05))
        return gw, bare


def measure(n: int) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory() as d, Receiver() as receiver:
        tmp = Path(d)
        broker = Broker(tmp)
        broker.start()
        proc = watch = trials = None
        try:
            cfg, key = write_site(tmp, broker.url, config_body(receiver.rx.path))
            topics = [f"{ROOT}/status", f"{ROOT}/cmd/result", f"{ROOT}/events/+", BARE]
            watch = Watch(broker.port, topics, lambda t: t == BARE or "/events/" in t)
            log = tmp / "gatewayd.log"
            proc, _ = start_daemon(cfg, log)
            deadline = time.monotonic() + 10
            while b"listening for commands" not in log.read_bytes():
                if time.monotonic() > deadline:
                    raise TimeoutError("the daemon did not subscribe to commands")
                time.sleep(0.02)
            trials = Trials(watch, receiver, key, broker.port)
            gw, bare = trials.run(n)
            if proc.poll() is not None:
                raise RuntimeError("the daemon died during the run")
            return gw, bare, trials.size
        finally:
            if trials is not None:
                trials.close()
            if proc is not None:
                proc.terminate()
                proc.wait(10)
            if watch is not None:
                watch.close()
            broker.stop()


def run(quick: bool) -> list[dict[str, Any]]:
    n = 50 if quick else 500
    gw, bare, size = measure(n)
    rows = []
    for p in (50, 99):
        g, b = 1000 * percentile(gw, p), 1000 * percentile(bare, p)
        rows.append(
            row(
                f"smoke alarm: frame's last byte on the pty → event at a subscriber, p{p} ({n} alarms)",
                g,
                "ms",
                f"bare MQTT publish → receive, {size} B, same broker",
                b,
                "≤ 3 × baseline" if p == 99 else "",
                g <= 3 * b if p == 99 else None,
            )
        )
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(r)
