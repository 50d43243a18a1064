"""What the gateway tells the platform, per the MQTT contract, and how it gets there.

Events and command results go through the outbox (QoS 1, in order, until PUBACK). Retained
topics (status, alarms, device state) are current state, not history: they are published when
they change and republished whole on every (re)connect. Telemetry is best-effort QoS 0.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gatewayd import __version__
from gatewayd.model import Alarm, Event
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import INFO, URGENT, Outbox

log = logging.getLogger("gatewayd.uplink.publisher")

INFLIGHT_WINDOW = 100


def lane_of(event: Event) -> int:
    """Critical and warning events and every access decision at a door go first."""
    return URGENT if event.severity != "info" or event.kind == "door" else INFO


def dumps(obj: Any) -> bytes:
    # backslashreplace: a lone surrogate smuggled into a payload must not stop a message.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "backslashreplace"
    )


class Topics:
    def __init__(self, root: str) -> None:
        self.root = root
        self.status = f"{root}/status"
        self.alarms = f"{root}/alarms"
        self.cmd = f"{root}/cmd"
        self.cmd_result = f"{root}/cmd/result"

    def event(self, device: str) -> str:
        return f"{self.root}/events/{device}"

    def state(self, device: str) -> str:
        return f"{self.root}/state/{device}"

    def telemetry(self, device: str) -> str:
        return f"{self.root}/telemetry/{device}"


class Publisher:
    def __init__(self, topics: Topics, outbox: Outbox, started: float, site: str) -> None:
        self.topics = topics
        self.outbox = outbox
        self.started = started
        self.site = site
        self.link: MqttLink | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self._alarms: Callable[[], list[Alarm]] = list
        self._fire_mode: Callable[[], bool] = lambda: False

    def bind(
        self, link: MqttLink, alarms: Callable[[], list[Alarm]], fire_mode: Callable[[], bool]
    ) -> None:
        self.link = link
        self._alarms = alarms
        self._fire_mode = fire_mode

    # -- payloads ------------------------------------------------------------------------

    def status_payload(self, online: bool) -> bytes:
        body: dict[str, Any] = {"online": online, "version": __version__, "started": self.started}
        if online:
            body.update(fire_mode=self._fire_mode(), site=self.site)
        return dumps(body)

    def will(self) -> tuple[str, bytes]:
        return self.topics.status, self.status_payload(False)

    # -- publishing ----------------------------------------------------------------------

    def event(self, event: Event) -> None:
        self.outbox.put(
            self.topics.event(event.device), dumps(event.to_json()), lane=lane_of(event)
        )
        self.pump()

    def result(self, body: Mapping[str, Any]) -> None:
        self.outbox.put(self.topics.cmd_result, dumps(body), lane=URGENT)
        self.pump()

    def state(self, device: str, changes: Mapping[str, Any]) -> None:
        current = self.states.setdefault(device, {})
        if all(current.get(k) == v for k, v in changes.items()):
            return
        current.update(changes)
        self._retained(self.topics.state(device), {**current, "ts": time.time()})

    def telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        topic = self.topics.telemetry(device)
        payload = dumps({"ts": time.time(), "values": dict(values)})
        link = self.link
        if link is None or link.publish(topic, payload, qos=0) is None:
            self.outbox.put_telemetry(topic, payload)  # best effort: memory only, bounded

    def alarms_changed(self) -> None:
        self._retained(
            self.topics.alarms, {"ts": time.time(), "active": [a.to_json() for a in self._alarms()]}
        )

    def status_changed(self) -> None:
        if self.link is not None:
            self.link.publish(self.topics.status, self.status_payload(True), qos=1, retain=True)

    def on_connected(self) -> None:
        """Republish the current retained picture, then drain the outbox."""
        self.status_changed()
        self.alarms_changed()
        for device, state in self.states.items():
            self._retained(self.topics.state(device), {**state, "ts": time.time()})
        self.pump()

    def on_disconnected(self) -> None:
        self.outbox.requeue()

    def on_acked(self, mid: int) -> None:
        self.outbox.acked(mid)
        self.pump()

    def pump(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        outbox = self.outbox
        while len(outbox.inflight) < INFLIGHT_WINDOW:
            msg = outbox.next()
            if msg is None:
                return
            mid = link.publish(msg.topic, msg.payload, qos=msg.qos)
            if mid is None:
                return
            outbox.sent(msg, mid)

    def _retained(self, topic: str, body: Mapping[str, Any]) -> None:
        if self.link is not None:
            self.link.publish(topic, dumps(body), qos=1, retain=True)
