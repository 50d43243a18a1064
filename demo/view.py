"""The live view: what the gateway publishes, one readable line per message."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m", "ok": "\033[32m"}
RESET = "\033[0m"


class LiveView:
    def __init__(self, port: int, root: str, colour: bool = True) -> None:
        self.root = root
        self.colour = colour
        self.lock = threading.Lock()
        self.seen: list[tuple[str, Any]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-view")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{root}/#", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def say(self, text: str) -> None:
        with self.lock:
            print(f"\n\033[1m▶ {text}{RESET}" if self.colour else f"\n> {text}", flush=True)

    def wait_for(
        self, topic_suffix: str, pred: Any = lambda _b: True, timeout: float = 15.0
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for topic, body in self.seen:
                    if topic.endswith(topic_suffix) and pred(body):
                        return body
            time.sleep(0.05)
        return None

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        topic = msg.topic.removeprefix(self.root + "/")
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = msg.payload.decode(errors="replace")
        with self.lock:
            self.seen.append((topic, body))
            line = self.format(topic, body, msg.retain)
            if line:
                print(line, flush=True)

    def format(self, topic: str, body: Any, retained: bool) -> str:
        now = time.strftime("%H:%M:%S")
        kind, _, rest = topic.partition("/")
        if kind == "cmd" and rest == "":
            return f"{now}  command   → {body.get('device')} {body.get('action')} {body.get('args') or ''} (user {body.get('user')})"
        if kind == "cmd" and rest == "result":
            tone = "ok" if body.get("ok") else "warning"
            return self.paint(
                tone,
                f"{now}  result    ← {body.get('code')} {body.get('detail') or ''} ({body.get('ms')} ms)",
            )
        if kind == "events":
            data = " ".join(f"{k}={v}" for k, v in (body.get("data") or {}).items())
            return self.paint(
                body.get("severity", "info"),
                f"{now}  event     {body.get('device'):<12} {body.get('type'):<24} {data}",
            )
        if kind == "alarms":
            active = (
                ", ".join(f"{a['type']}@{a['device']}" for a in body.get("active", [])) or "none"
            )
            return self.paint(
                "critical" if body.get("active") else "ok", f"{now}  alarms    active: {active}"
            )
        if kind == "status":
            fire = "  FIRE MODE" if body.get("fire_mode") else ""
            return self.paint(
                "critical" if fire else "ok", f"{now}  status    online={body.get('online')}{fire}"
            )
        if kind == "state":
            keep = {k: v for k, v in body.items() if k not in ("ts", "ports")}
            return f"{now}  state     {rest:<12} " + " ".join(f"{k}={v}" for k, v in keep.items())
        if kind == "telemetry":
            return ""  # per-port numbers every few seconds would drown the story
        return f"{now}  {topic} {body}"

    def paint(self, tone: str, text: str) -> str:
        return f"{COLOURS.get(tone, '')}{text}{RESET}" if self.colour else text
