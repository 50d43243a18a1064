"""The MQTT link to the platform's broker (paho-mqtt 2, driven by the daemon's event loop).

paho runs without its own thread: its socket hooks register the socket with asyncio, so every
callback runs on the loop and nothing races the daemon's state. The blocking part of connecting
(DNS, TCP, TLS handshake) runs in the executor before the hooks are installed. The link
reconnects forever with capped, jittered backoff. It knows topics and bytes, nothing of devices.

Failover: ``[mqtt] url`` may list several broker nodes (a cluster's, or a primary and its
standby). The link stays on the node that works and moves to the next one in the list only when
a connection attempt fails or a session is lost, after the same backoff; the publisher then
republishes the retained picture and drains the outbox there (``on_connected``). When a node
dies its sessions' last wills die with it: the fresh status sent from the next node is what the
platform sees.

Used as ``async with MqttLink(...) as link``: entering starts the connection loop; leaving
publishes the farewell (the offline status), awaits its PUBACK, disconnects cleanly (so the
broker drops the last will) and awaits the loop's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from gatewayd import ticks
from gatewayd.backoff import Backoff
from gatewayd.config import BrokerUrl, Config, MqttConfig

log = logging.getLogger("gatewayd.uplink.link")
# The longest wait before a refused subscription is asked again: a gateway deaf to commands
# must not stay so for long once the broker can grant it (a SUBSCRIBE is a few dozen bytes).
SUBSCRIBE_RETRY_MAX_SECONDS = 10.0

MessageHandler = Callable[[str, bytes], None]


class MqttLink:
    def __init__(
        self,
        config: Config,
        will: tuple[str, bytes],
        on_message: MessageHandler,
        on_connected: Callable[[], None],
        on_acked: Callable[[int], None],
        on_disconnected: Callable[[], None],
        subscriptions: tuple[str, ...],
        farewell: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        self.config = config
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_acked = on_acked
        self.on_disconnected = on_disconnected
        self.subscriptions = subscriptions
        self.farewell = farewell
        self._runner: asyncio.Task[None] | None = None
        self.connected = False
        self.connects = 0
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._misc: asyncio.Task[None] | None = None
        self._stopping = False
        self._fd = -1
        self._was_up = False
        #: Which of ``[mqtt] url`` the link uses (or tries) now; exported as a metric.
        self.broker_index = 0
        self._last_index: int | None = None  # the node of the last session that came up
        self._will = will
        #: paho's client, made by the link's own task: paho's import (~20 ms here, more on a
        #: Pi) comes after the daemon is ready, since the local rules never wait for it.
        self.client: Any = None
        self._mqtt: Any = None
        # A refused subscription is asked again, with backoff, for as long as the session lasts:
        # a clustered broker (NATS) refuses one for seconds after losing a node, and a gateway
        # connected but deaf to commands would never notice on its own.
        self._resubscribe: asyncio.TimerHandle | None = None
        self._subscribe_backoff = Backoff(1.0, SUBSCRIBE_RETRY_MAX_SECONDS)

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._mqtt = mqtt
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.gateway_id,
            clean_session=True,
        )
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.enable_logger(logging.getLogger("gatewayd.paho"))
        log_in(c, self.config.mqtt)
        c.will_set(self._will[0], self._will[1], qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        return c

    # -- public face ---------------------------------------------------------------------

    async def __aenter__(self) -> MqttLink:
        self._runner = asyncio.create_task(self.run(), name="mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close(self.farewell() if self.farewell is not None else None)
        finally:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)

    @property
    def broker(self) -> BrokerUrl:
        return self.config.mqtt.brokers[self.broker_index]

    async def run(self) -> None:
        """Connect, stay connected, reconnect (to the next node on failure): until cancelled."""
        mq = self.config.mqtt
        backoff = Backoff(min(1.0, mq.reconnect_max_seconds), mq.reconnect_max_seconds)
        if self.client is None:
            self.client = self._make_client()
        while not self._stopping:
            try:
                await self._connect()
            except (OSError, ssl.SSLError) as exc:
                failed = self.broker
                self._next_broker()
                delay = backoff.next()
                log.warning(
                    "broker %s unreachable (%s); retrying in %.1f s%s",
                    failed.where, exc, delay, self._on_next(),
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            await self._closed.wait()
            if self._stopping:
                return
            if self._was_up:  # a session that came up starts the backoff afresh
                backoff.reset()
            lost = self.broker
            self._next_broker()
            delay = backoff.next()
            log.warning(
                "broker connection lost (%s); reconnecting in %.1f s%s",
                lost.where, delay, self._on_next(),
            )  # fmt: skip
            await asyncio.sleep(delay)

    def _on_next(self) -> str:
        """Where the next attempt goes, for the log line (nothing when there is one url)."""
        return f" on {self.broker.where}" if len(self.config.mqtt.brokers) > 1 else ""

    def _next_broker(self) -> None:
        """Rotate to the next node of the list (the same one when there is only one)."""
        self.broker_index = (self.broker_index + 1) % len(self.config.mqtt.brokers)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; returns its mid, or None when not connected."""
        if not self.connected:
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    async def close(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Publish ``final`` (the offline status), wait for its PUBACK, then disconnect cleanly
        so the broker discards the last will."""
        self._stopping = True
        if self.connected and final is not None:
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            try:
                async with asyncio.timeout(timeout):
                    while not info.is_published() and self.connected:
                        await asyncio.sleep(0.01)
            except TimeoutError:
                log.warning("offline status not acknowledged within %.1f s", timeout)
        if self.client is not None and self.client.is_connected():
            self.client.disconnect()
            try:
                async with asyncio.timeout(timeout):
                    await self._closed.wait()
            except TimeoutError:
                pass
        self._teardown_socket()

    # -- connection plumbing -------------------------------------------------------------

    async def _connect(self) -> None:
        c = self.client
        mq = self.config.mqtt
        self._was_up = False
        self._closed.clear()
        for hook in (
            "on_socket_open",
            "on_socket_close",
            "on_socket_register_write",
            "on_socket_unregister_write",
        ):
            setattr(c, hook, None)
        b = self.broker
        await self._loop.run_in_executor(None, c.connect, b.host, b.port, mq.keepalive)
        sock = c.socket()
        if sock is None:
            raise OSError("connection closed during connect")
        # paho leaves Nagle on: a small alarm written right behind another would wait ~40 ms for
        # the broker's delayed ACK. Safety messages go out at once.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        # Register by fd number: paho closes the socket object before telling us.
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._read)
        if c.want_write():
            self._loop.add_writer(self._fd, self._write)
        self._misc = self._loop.create_task(self._misc_loop(), name="mqtt-misc")

    def _read(self) -> None:
        self.client.loop_read()

    def _write(self) -> None:
        self.client.loop_write()

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._fd >= 0:
            self._loop.add_writer(self._fd, self._write)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._fd >= 0:
            self._loop.remove_writer(self._fd)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._teardown_socket()
        self._mark_down()

    async def _misc_loop(self) -> None:
        # Keepalive pings and timeouts: paho wants loop_misc about once a second (on the
        # shared grid: the same wake-up as the rules' tick).
        while self.client.loop_misc() == self._mqtt.MQTT_ERR_SUCCESS:
            await ticks.tick(1.0)

    def _teardown_socket(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = -1
        if self._misc is not None and self._misc is not asyncio.current_task():
            self._misc.cancel()

    def _mark_down(self) -> None:
        if self._resubscribe is not None:
            self._resubscribe.cancel()
            self._resubscribe = None
        if self.connected:
            self.connected = False
            self.on_disconnected()
        if self._misc is not None and self._misc is not asyncio.current_task():
            self._misc.cancel()
        self._closed.set()

    # -- paho callbacks (all on the loop thread) ----------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            client.disconnect()
            return
        self.connected = True
        self._was_up = True
        self.connects += 1
        b, count = self.broker, len(self.config.mqtt.brokers)
        tls = " (TLS)" if b.tls else ""
        if self._last_index is not None and self._last_index != self.broker_index:
            log.warning(
                "failover: connected to broker %s (url %d of %d)%s instead of %s",
                b.where, self.broker_index + 1, count, tls,
                self.config.mqtt.brokers[self._last_index].where,
            )  # fmt: skip
        else:
            node = f" (url {self.broker_index + 1} of {count})" if count > 1 else ""
            log.info("connected to broker %s%s%s", b.where, node, tls)
        self._last_index = self.broker_index
        self._subscribe_backoff.reset()
        self._subscribe()
        self.on_connected()

    def _subscribe(self) -> None:
        self._resubscribe = None
        if self.connected:
            for topic in self.subscriptions:
                self.client.subscribe(topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            delay = self._subscribe_backoff.next()
            log.error(
                "broker refused the subscription to %s; asking again in %.1f s",
                ", ".join(self.subscriptions), delay,
            )  # fmt: skip
            if self.connected and self._resubscribe is None:
                self._resubscribe = self._loop.call_later(delay, self._subscribe)
        else:
            self._subscribe_backoff.reset()
            log.info("listening for commands on %s", ", ".join(self.subscriptions))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._mark_down()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.on_message(msg.topic, msg.payload)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.on_acked(mid)


def log_in(client: Any, mq: MqttConfig) -> None:
    """Give a paho client this gateway's credentials: user and password, and TLS with the
    configured CA (and client certificate). Raises ``OSError``/``ssl.SSLError`` for TLS
    files that cannot be read or used."""
    if mq.username is not None:
        password = mq.password.value.decode() if mq.password else None
        client.username_pw_set(mq.username, password)
    if mq.tls:
        ctx = ssl.create_default_context(cafile=mq.ca_file)
        if mq.cert_file and mq.key_file:
            ctx.load_cert_chain(mq.cert_file, mq.key_file)
        client.tls_set_context(ctx)
