"""The live view: what the gateway publishes, one readable line per message."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m", "ok": "\033[32m"}
RESET = "\033[0m"


#: State fields that only say when: the line's own time says it better.
STAMPS = ("ts", "last_seen")
#: Units by key suffix, for people reading a state line.
UNITS = (("_mv", "mV"), ("_c", "°C"), ("_w", "W"), ("_v", "V"), ("_pct", "%"))


def shown(key: str, value: Any) -> str | None:
    """One ``key=value`` for a person: units, lists without brackets; None for nothing."""
    if value is None or value in ([], {}):
        return None
    if isinstance(value, float):
        value = f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1e9 else None
        if value is None:
            return None  # an epoch in a field the line's time already tells
    if isinstance(value, list):  # a dict in a list (a drill step's actions): its values
        value = ",".join(
            " ".join(str(x) for x in v.values() if x is not None) if isinstance(v, dict) else str(v)
            for v in value
        )
    if isinstance(value, dict):
        inner = [shown(k, v) for k, v in value.items() if k not in STAMPS]
        value = "(" + " ".join(i for i in inner if i) + ")"
    unit = next((u for suffix, u in UNITS if key.endswith(suffix)), "")
    return f"{key}={value}{' ' + unit if unit and not isinstance(value, bool) else ''}"


def port_temperatures(ports: list[dict[str, Any]]) -> str | None:
    """A pile's port temperatures, the figure that moves when a plug heats up."""
    temps = [
        f"{p['port']}:{p['temperature_c']:.1f}"
        for p in ports
        if isinstance(p.get("temperature_c"), int | float)
    ]
    return f"ports °C {' '.join(temps)}" if temps else None


class LiveView:
    def __init__(self, port: int, root: str, colour: bool = True) -> None:
        self.root = root
        self.colour = colour
        self.lock = threading.Lock()
        self.seen: list[tuple[str, Any]] = []
        self.states: dict[str, str] = {}  # device -> its last printed state line
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

    def mark(self) -> int:
        """Where the messages seen so far end: ``wait_for(after=...)`` looks past it only."""
        with self.lock:
            return len(self.seen)

    def wait_for(
        self, topic_suffix: str, pred: Any = lambda _b: True, timeout: float = 15.0, after: int = 0
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for topic, body in self.seen[after:]:
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
            args = " ".join(t for k, v in (body.get("args") or {}).items() if (t := shown(k, v)))
            return f"{now}  command   → {body.get('device')} {body.get('action')} {args} (user {body.get('user')})"
        if kind == "cmd" and rest == "result":
            tone = "ok" if body.get("ok") else "warning"
            ms = body.get("ms")
            took = f" ({ms:.1f} ms)" if isinstance(ms, int | float) else ""
            drill = " [DRILL]" if (body.get("data") or {}).get("drill") else ""
            text = f"{now}  result    ← {body.get('code')} {body.get('detail') or ''}{took}{drill}"
            return self.paint(tone, text)
        if kind == "events":
            data = " ".join(
                text for k, v in (body.get("data") or {}).items() if (text := shown(k, v))
            )
            # A drill's events are no fire: said first, and never in the fire's red.
            drill = (body.get("data") or {}).get("drill") is True
            tone = "info" if drill else body.get("severity", "info")
            head = "DRILL " if drill else "event "
            return self.paint(
                tone, f"{now}  {head}    {body.get('device'):<12} {body.get('type'):<24} {data}"
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
            parts = [shown(k, v) for k, v in body.items() if k not in (*STAMPS, "ports")]
            if isinstance(body.get("ports"), list):
                parts.append(port_temperatures(body["ports"]))
            text = " ".join(p for p in parts if p)
            if self.states.get(rest) == text:
                return ""  # republished unchanged: nothing new to see
            self.states[rest] = text
            return f"{now}  state     {rest:<12} {text}"
        if kind == "devices":
            listed = ", ".join(f"{d['id']} ({d.get('title') or d.get('kind')})"
                               for d in body.get("devices", []))  # fmt: skip
            return f"{now}  devices   {listed or 'none'}"
        if kind == "telemetry":
            return ""  # per-port numbers every few seconds would drown the story
        return f"{now}  {topic} {body}"

    def paint(self, tone: str, text: str) -> str:
        return f"{COLOURS.get(tone, '')}{text}{RESET}" if self.colour else text
