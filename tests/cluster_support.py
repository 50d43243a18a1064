"""Test-side MQTT clients for the 3-node NATS cluster (firmware_stubs/nats_cluster.py).

A client on a cluster must wait out what a single mosquitto never does: a session refused or
stalled while JetStream elects a leader (up to ``LEADER_LOSS_STALL`` after a node dies, a few
seconds on a fresh cluster). Those waits are here, explicit and bounded, so that a test says
"within the cluster's recovery" once and never sleeps."""

from __future__ import annotations

import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_stubs.nats_cluster import LEADER_LOSS_STALL
from tests.harness import Recording


class NodeClient(Recording):
    """A paho client (on its own thread) connected to one node, recording what it receives.

    paho retries a refused or stalled CONNECT by itself (every second here); the constructor
    waits up to ``within`` seconds for CONNACK and then for the SUBACK of ``subscribe``."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        clean_session: bool = True,
        subscribe: str | None = None,
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
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(within):
            self.close()
            raise AssertionError(f"no MQTT session on port {port} within {within:.0f} s")
        if subscribe is not None:
            self.client.subscribe(subscribe, qos=1)
            if not self._subscribed.wait(within):
                self.close()
                raise AssertionError(f"no SUBACK for {subscribe} within {within:.0f} s")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            self.session_present = bool(flags.session_present)
            self._connected.set()

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def die(self) -> None:
        """Vanish without DISCONNECT (a process killed, a cable pulled): the broker sees the
        connection end and must publish the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
