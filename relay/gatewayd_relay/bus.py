"""The process's one MQTT client to the platform's broker.

It subscribes to what the relay follows on every gateway (results, alarms, door and critical
events, state, status) and to the relay's own topic, on which processes tell each other about
changes the gateways cannot show (an acknowledgement, a revoked grant). paho runs its network
loop in its own thread; every message is handed to the event loop at once, and nothing else
happens in paho's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gatewayd_relay.settings import Settings

log = logging.getLogger("gatewayd_relay.bus")


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class Bus:
    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Message], None],
    ) -> None:
        self._settings = settings
        self._loop = loop
        self._deliver = deliver
        self.connected = asyncio.Event()
        b = settings.broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"relay-{socket.gethostname()}-{secrets.token_hex(4)}",
            # Stateless: what a process missed while down is the retained state it gets back.
            clean_session=True,
        )
        self.client.enable_logger(logging.getLogger("gatewayd_relay.paho"))
        if b.username:
            self.client.username_pw_set(b.username, b.password)
        if b.tls:
            self.client.tls_set_context(ssl.create_default_context(cafile=b.ca_file))
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def subscriptions(self) -> list[tuple[str, int]]:
        p = self._settings.topic_prefix
        return [
            (f"{p}/+/cmd/result", 1),
            (f"{p}/+/alarms", 1),
            (f"{p}/+/status", 1),
            (f"{p}/+/events/#", 1),
            (f"{p}/+/state/#", 1),
            (f"{self._settings.relay_topic}/#", 1),
        ]

    def start(self) -> None:
        b = self._settings.broker
        self.client.connect_async(b.host, b.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Thread-safe; queued by paho while the link is down (QoS 1)."""
        self.client.publish(topic, payload, qos=qos)

    # paho's thread below: hand over, nothing more.

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        # No Nagle: a command is one small packet and a person is waiting for it.
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(self.subscriptions())
        log.info(
            "connected to the broker %s:%s", self._settings.broker.host, self._settings.broker.port
        )
        self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("broker connection lost (%s); reconnecting", reason)
        self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        m = Message(msg.topic, bytes(msg.payload), bool(msg.retain))
        with contextlib.suppress(RuntimeError):  # the loop is closing: the process stops
            self._loop.call_soon_threadsafe(self._deliver, m)
