"""The soak's peers and judge: the platform's MQTT client, a witness on the daemon's control
socket, /proc figures, and the verdict over a run's figures (see bench/soak.py)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gatewayd.commands.signing import sign

GW = "gw-soak"
ROOT = f"pingan/v1/{GW}"


class Platform:
    """The platform's MQTT client: records every event, result and retained state; sends
    signed commands. Reconnects (and resubscribes) by itself across broker restarts."""

    def __init__(self, port: int, key: bytes) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.retained: dict[str, Any] = {}
        # When the gateway last published its status itself (not a retained copy replayed by
        # the broker on subscribing, which after a broker restart may be a stale "online").
        self.status_live_at = 0.0
        self.ids = itertools.count()
        self.sent: dict[str, str] = {}  # command id -> "device action"
        self.sent_at: dict[str, float] = {}  # command id -> monotonic time sent
        self.answered_at: dict[str, float] = {}  # command id -> monotonic time of the 1st result
        # A persistent session, as a platform has: what comes while it reconnects waits for it.
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="soak-platform", clean_session=False
        )
        c.reconnect_delay_set(0.2, 1.0)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{ROOT}/#", qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if "/events/" in msg.topic:
                self.events.append(body)
            elif msg.topic.endswith("/cmd/result"):
                cid = str(body.get("id"))
                self.results.setdefault(cid, []).append(body)
                self.answered_at.setdefault(cid, time.monotonic())
            elif not msg.topic.endswith("/cmd") and "/telemetry/" not in msg.topic:
                self.retained[msg.topic.removeprefix(ROOT + "/")] = body
                if msg.topic.endswith("/status") and not msg.retain:
                    self.status_live_at = time.monotonic()

    def state(self, topic: str) -> Any:
        with self.lock:
            return self.retained.get(topic, {})

    def command(self, device: str, action: str, args: dict[str, Any] | None = None) -> str:
        now = time.time()
        cid = f"soak-{next(self.ids)}"
        body = {"id": cid, "device": device, "action": action, "args": args or {},
                "user": "soak", "iat": now, "exp": now + 60}  # fmt: skip
        self.sent[cid] = f"{device} {action}"
        self.sent_at[cid] = time.monotonic()
        self.client.publish(f"{ROOT}/cmd", json.dumps(sign(self.key, body)), qos=1)
        return cid

    def result(self, cid: str, timeout: float = 15.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = self.results.get(cid)
            if got:
                return got[0]
            time.sleep(0.05)
        return None

    def await_answers(self, timeout: float) -> None:
        """Wait until every command sent has a result, or ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(c in self.results for c in self.sent):
                    return
            time.sleep(0.05)

    def answer_seconds(self) -> list[float]:
        """Seconds from sending to the first result, per command answered."""
        with self.lock:
            return [
                self.answered_at[c] - t for c, t in self.sent_at.items() if c in self.answered_at
            ]

    def wait_event(self, pred: Any, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                hit = next((e for e in self.events if pred(e)), None)
            if hit is not None:
                return hit
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def proc_figures(pid: int) -> dict[str, int]:
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "Threads:")):
                key, value = line.split(":")
                out["rss_kb" if key == "VmRSS" else "threads"] = int(value.split()[0])
    return out


def control(path: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request on the daemon's control socket, one answer (line-delimited JSON)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    # The first line is the answer; a daemon whose clock runs fast (the outage tests) may
    # already have said its idle timeout after it.
    return dict(json.loads(buf.split(b"\n", 1)[0]))


class Witness:
    """What the daemon itself handled, from its control socket's event stream: tells an event
    lost on the way to the broker from one the gateway never heard."""

    def __init__(self, path: Path) -> None:
        self.seen: set[tuple[str, str, int]] = set()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.sock.sendall(b'{"cmd": "events"}\n')
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    e = json.loads(line)
                    key = key_of(e)
                    if key is not None:
                        self.seen.add(key)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader; the daemon sees EOF
        self.thread.join(2)
        self.sock.close()


def key_of(e: dict[str, Any]) -> tuple[str, str, int] | None:
    d = e.get("data") or {}
    k = d.get("seq") if str(e.get("type", "")).startswith("smoke.") else d.get("counter")
    return (e["device"], e["type"], k) if isinstance(k, int) else None
