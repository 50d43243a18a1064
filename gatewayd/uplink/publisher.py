"""What the gateway tells the platform, per the MQTT contract, and how it gets there.

Events and command results go through the outbox (QoS 1, in order, until PUBACK): critical
events (a fire, a smoke alarm) ahead of everything, then warning events, command results and
every access decision (``EventSpec.urgent``), then the rest. How long each critical event took
from its frame to the broker's PUBACK is kept in ``delivery`` (docs/monitoring.md). Retained
topics (status, alarms, the devices list, device state) are current state, not history: they
are published when they change and republished whole on every (re)connect; a device taken out
of the config has its retained state cleared (an empty retained message). Events and state
carry the device's ``room`` where it has one. What a device says of itself once (its family's
``identity``: a pile's firmware and port count) goes in its entry of the devices list, not in
every state. Telemetry is best-effort QoS 0. What of state
and telemetry goes, and when, is ``gatewayd.uplink.exception``'s (report by exception).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gatewayd import __version__
from gatewayd.config import UplinkConfig
from gatewayd.model import Alarm, Event
from gatewayd.uplink.delivery import DeliveryTimes
from gatewayd.uplink.exception import Exceptions
from gatewayd.uplink.lanes import CRITICAL, INFO, URGENT
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.topics import Topics, dumps

if TYPE_CHECKING:
    from gatewayd.family import Family

log = logging.getLogger("gatewayd.uplink.publisher")

INFLIGHT_WINDOW = 100


class House(Protocol):
    """What the publisher needs to know of the house (the runtime answers from the config and
    the device families)."""

    def urgent(self, event: Event) -> bool:
        """Whether ``event`` goes ahead of other info events (an access decision)."""

    def room(self, device: str) -> str:
        """Where the device is, for people ("" when it has no room)."""

    def devices(self) -> list[dict[str, Any]]:
        """The retained ``{root}/devices`` list."""

    def family_of(self, device: str) -> Family | None:
        """The device's family (its deadbands and readings); None for the gateway itself."""


class BareHouse:
    """A house with no rooms, no access decisions and no devices list (tools, benchmarks)."""

    def urgent(self, event: Event) -> bool:
        return False

    def room(self, device: str) -> str:
        return ""

    def devices(self) -> list[dict[str, Any]]:
        return []

    def family_of(self, device: str) -> Family | None:
        return None


class Publisher:
    def __init__(
        self,
        topics: Topics,
        outbox: Outbox,
        started: float,
        site: str,
        house: House,
        uplink: UplinkConfig | None = None,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.started = started
        self.site = site
        self.house = house
        self.link: MqttLink | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self.identities: dict[str, dict[str, Any]] = {}  # device -> its family's identity
        self.forgotten: set[str] = set()
        self._alarms: Callable[[], list[Alarm]] = list
        self._fire_mode: Callable[[], bool] = lambda: False
        self.delivery = DeliveryTimes()  # critical events: their ts -> the broker's PUBACK
        self._alarmed: dict[str, Any] = {}  # alarm id -> as last published
        self.exceptions = Exceptions(
            uplink or UplinkConfig(), house.family_of, self._state_now, self._telemetry_now
        )

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
        body = event.to_json()
        if not self._every_reading:
            body["ts"] = round(event.ts, 3)
        room = self.house.room(event.device)
        if room:
            body["room"] = room
        self.outbox.put(
            self.topics.event(event.device), dumps(body), lane=self.lane(event), created=event.ts
        )
        self.pump()
        self.exceptions.eager(event.device)

    def lane(self, event: Event) -> int:
        """The class of service ``event`` travels in."""
        if event.severity == "critical":
            return CRITICAL
        return URGENT if event.severity == "warning" or self.house.urgent(event) else INFO

    def result(self, body: Mapping[str, Any]) -> None:
        self.outbox.put(self.topics.cmd_result, dumps(body), lane=URGENT)
        self.pump()

    def state(self, device: str, changes: Mapping[str, Any]) -> None:
        family = self.house.family_of(device)
        if family is not None and family.identity:
            said = {k: v for k, v in changes.items() if k in family.identity}
            if said:
                self._identify(device, said)
            if not self._every_reading:  # the old uplink repeated them in every state
                changes = {k: v for k, v in changes.items() if k not in family.identity}
        current = self.states.get(device)
        if current is None:
            room = self.house.room(device)
            current = self.states[device] = {"room": room} if room else {}
        if all(current.get(k) == v for k, v in changes.items()):
            return
        current.update(changes)
        if self._every_reading or self.exceptions.state_changed(device, current):
            self._retained(self.topics.state(device), {**current, "ts": self._now()})

    def forget(self, device: str) -> None:
        """A device taken out of the config: its retained state is cleared (now, and on every
        connect while this process lives, in case the broker did not get it)."""
        self.states.pop(device, None)
        self.identities.pop(device, None)
        self.exceptions.forget(device)
        self.forgotten.add(device)
        self._clear(self.topics.state(device))

    def devices_changed(self) -> None:
        devices = [{**d, **self.identities.get(d["id"], {})} for d in self.house.devices()]
        self._retained(self.topics.devices, {"ts": time.time(), "devices": devices})

    def _identify(self, device: str, said: Mapping[str, Any]) -> None:
        """A device said what it is (at start, after a firmware update): the devices list
        carries it, republished only when it changed."""
        known = self.identities.setdefault(device, {})
        if all(known.get(k) == v for k, v in said.items()):
            return
        known.update(said)
        self.devices_changed()

    def telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        if self._every_reading:
            self._telemetry_now(device, {"ts": time.time(), "values": dict(values)})
        else:
            self.exceptions.telemetry(device, values)

    def _telemetry_now(self, device: str, body: Mapping[str, Any]) -> None:
        topic = self.topics.telemetry(device)
        payload = dumps(body)
        link = self.link
        if link is None or link.publish(topic, payload, qos=0) is None:
            self.outbox.put_telemetry(topic, payload)  # best effort: memory only, bounded

    def alarms_changed(self) -> None:
        active = [a.to_json() for a in self._alarms()]
        self._retained(self.topics.alarms, {"ts": self._now(), "active": active})
        # A rule's threshold crossed (or no longer): the device's readings go at once.
        now = {a["id"]: a for a in active}
        for key in now.keys() | self._alarmed.keys():
            if now.get(key) != self._alarmed.get(key):
                self.exceptions.eager(str((now.get(key) or self._alarmed[key])["device"]))
        self._alarmed = now

    def status_changed(self) -> None:
        if self.link is not None:
            self.link.publish(self.topics.status, self.status_payload(True), qos=1, retain=True)

    def on_connected(self) -> None:
        """Republish the current retained picture, then drain the outbox."""
        self.status_changed()
        self.alarms_changed()
        self.devices_changed()
        for device in self.forgotten:
            self._clear(self.topics.state(device))
        for device in self.states:
            self._state_now(device)
        self.pump()

    def on_disconnected(self) -> None:
        self.outbox.requeue()

    def on_acked(self, mid: int) -> None:
        msg = self.outbox.acked(mid)
        if msg is not None and msg.lane == CRITICAL:  # from its event's ts, outages included
            self.delivery.observe(time.time() - msg.created)
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

    @property
    def _every_reading(self) -> bool:
        return self.exceptions.settings.every_reading

    def _now(self) -> float:
        """Timestamps to the millisecond (the old uplink's for its comparisons)."""
        return time.time() if self._every_reading else round(time.time(), 3)

    def _state_now(self, device: str) -> None:
        state = self.states[device]
        self._retained(self.topics.state(device), {**state, "ts": self._now()})
        self.exceptions.published(device, state)

    def _clear(self, topic: str) -> None:
        if self.link is not None:
            self.link.publish(topic, b"", qos=1, retain=True)

    def _retained(self, topic: str, body: Mapping[str, Any]) -> None:
        if self.link is not None:
            self.link.publish(topic, dumps(body), qos=1, retain=True)
