"""Test-side MQTT clients for the 3-node NATS cluster (firmware_stubs/nats_cluster.py).

A client on a cluster must wait out what a single mosquitto never does: a session refused or
stalled while JetStream elects a leader (up to ``LEADER_LOSS_STALL`` after a node dies, a few
seconds on a fresh cluster). Those waits are here, explicit and bounded, so that a test says
"within the cluster's recovery" once and never sleeps."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_stubs.nats_cluster import LEADER_LOSS_STALL
from tests.harness import Recording, release


class NodeClient(Recording):
    """A paho client (on its own thread) connected to one node, recording what it receives.

    paho retries a refused or stalled CONNECT by itself (every second here); the constructor
    waits up to ``within`` seconds for CONNACK, then as long again for a granted SUBACK of
    ``subscribe``."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        clean_session: bool = True,
        subscribe: str | None = None,
        qos: int = 1,
        will: tuple[str, bytes] | None = None,
        within: float = LEADER_LOSS_STALL,
    ) -> None:
        super().__init__()
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_message = self._on_message
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused = False
        self._topic, self._qos = subscribe, qos
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.disconnects = 0
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(within):
            self.close()
            raise AssertionError(f"no MQTT session on port {port} within {within:.0f} s")
        if subscribe is not None:
            self._subscribe(subscribe, within)

    def _subscribe(self, topic: str, within: float) -> None:
        """Subscribe until the broker grants it: NATS refuses a QoS 1 subscription (SUBACK
        0x80) while JetStream cannot create its consumer in 4 s, which on a loaded machine
        happens again and again while a node is down; a refused subscription delivers nothing,
        retained messages included. (A QoS 0 subscription needs no consumer: readers of
        retained messages use one.)"""
        deadline = time.monotonic() + within
        while True:
            self._subscribed.clear()
            self.client.subscribe(topic, qos=self._qos)
            if not self._subscribed.wait(max(0.0, deadline - time.monotonic())):
                break
            if not self._refused:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        self.close()
        raise AssertionError(f"no granted SUBACK for {topic} within {within:.0f} s")

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        self._refused = any(r.is_failure for r in reasons)
        self._subscribed.set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        self.session_present = bool(flags.session_present)
        if self._connected.is_set() and self._topic is not None and not self.session_present:
            # NATS closes a client whose QoS 1 publish it could not store (a stall); paho
            # reconnects, and a session that did not survive needs its subscription again.
            client.subscribe(self._topic, qos=self._qos)
        self._connected.set()

    def _on_disconnect(self, *_a: Any) -> None:
        self.disconnects += 1

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_acked(
        self,
        topic: str,
        payload: bytes | str,
        retain: bool = False,
        within: float = LEADER_LOSS_STALL,
    ) -> None:
        """Publish at QoS 1 until the broker acknowledges it, as a gateway's outbox does: NATS
        closes a client whose QoS 1 message it cannot store (a stall), and paho reconnects;
        the message is then sent again (a duplicate at worst: at least once)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected (yet)
                info.wait_for_publish(min(5.0, max(0.0, deadline - time.monotonic())))
            if info.is_published():
                return
            time.sleep(0.2)
        raise AssertionError(f"{topic} not acknowledged within {within:.0f} s")

    def arrives(
        self, topic: str, pred: Callable[[Any], bool], within: float = LEADER_LOSS_STALL
    ) -> Any:
        """The first JSON body on ``topic`` that ``pred`` accepts, within ``within`` s: delivery
        to a QoS 1 subscriber goes through a JetStream consumer, which now and then lags by
        seconds on a loaded machine. On failure, says whether it came late (and how late)
        or not at all, so a failure tells a lag from a loss."""
        t0 = time.monotonic()
        try:
            return self.wait(topic, pred, within)
        except AssertionError:
            try:
                self.wait(topic, pred, 30.0)
                late = f"it came {time.monotonic() - t0:.1f} s after the wait began"
            except AssertionError:
                late = f"nor within {within + 30:.0f} s"
            raise AssertionError(
                f"nothing on {topic} within {within:.0f} s; {late}"
                f" (this client's connection dropped {self.disconnects} times)"
            ) from None

    def die(self) -> None:
        """Vanish without DISCONNECT (a process killed, a cable pulled): the broker sees the
        connection end and must publish the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        release(self.client)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release(self.client)
