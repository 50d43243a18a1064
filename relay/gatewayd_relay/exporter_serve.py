"""`gatewayd-relay exporter`: the broker's pushed metrics (exporter.py) served over HTTP.

One paho client (the relay's ``Bus``, subscribed to ``{prefix}/+/metrics`` only) hands each
message to the event loop; a small HTTP/1.1 server on the same loop answers ``GET /metrics``.
Stateless apart from the latest frames: run as many replicas as you like, each with its own
subscription (no shared subscription: every replica must see every gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import signal
import time

from gatewayd_relay.bus import Bus, Message
from gatewayd_relay.exporter import Exporter
from gatewayd_relay.settings import Settings

log = logging.getLogger("gatewayd_relay.exporter")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 10.0  # s a client may take to send its request


class MetricsBus(Bus):
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(f"{self._settings.topic_prefix}/+/metrics", 0)]


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9109`` for IPv6) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen: expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


async def _answer(
    exporter: Exporter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        request, *headers = head.decode("latin-1").split("\r\n")
        method, path, *_ = [*request.split(" "), "", ""]
        gzip_ok = any(
            h.lower().startswith("accept-encoding:") and "gzip" in h.lower() for h in headers
        )
        extra = ""
        if method not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"use GET\n"
        elif path.split("?", maxsplit=1)[0] != "/metrics":
            status, body = "404 Not Found", b"see /metrics\n"
        else:
            status, body = "200 OK", exporter.exposition(time.time())
            if gzip_ok:
                body, extra = gzip.compress(body, compresslevel=1), "Content-Encoding: gzip\r\n"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # a client that went away or never asked: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def serve(settings: Settings, exporter: Exporter, listen: str) -> None:
    """Run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()

    def deliver(m: Message) -> None:
        exporter.receive(m.topic, m.payload, time.time())

    host, port = parse_listen(listen)
    server = await asyncio.start_server(
        lambda r, w: _answer(exporter, r, w), host, port, limit=16384
    )
    bus = MetricsBus(settings, loop, deliver)
    bus.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    log.info("exporter on http://%s:%s/metrics", bound[0], bound[1])
    try:
        async with server:
            await stop.wait()
    finally:
        bus.stop()
