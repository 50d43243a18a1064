"""The metrics endpoint: the text exposition (gatewayd.metrics.text) on its own small threaded
HTTP server.

prometheus_client's ``start_http_server`` offers TLS but not basic auth, and its TLS
handshake runs in the accepting thread (one slow client stalls every scrape). This server is
the same wsgiref server with both fixed: an optional basic-auth check in front of the app,
and the TLS handshake done in the request's own thread under a timeout. It never logs a
request (the scrape interval would flood the journal) and never logs the password.
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("gatewayd.metrics")

REQUEST_TIMEOUT = 10.0  # s a client may take to send its request (and to shake hands)

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9108`` for IPv6) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def basic_auth(app: App, username: str, password: str | bytes) -> App:
    """``app`` behind HTTP basic auth; a wrong or missing password gets 401."""
    secret = password.encode() if isinstance(password, str) else password
    expected = b"Basic " + base64.b64encode(username.encode() + b":" + secret.strip())

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # wsgiref hands headers over as latin-1 text: this gives back the bytes sent.
        got = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if not hmac.compare_digest(got, expected):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="gatewayd"'), ("Content-Type", "text/plain")],
            )
            return [b"unauthorized\n"]
        return app(environ, start_response)

    return guarded


def failing_soft(app: App) -> App:
    """A scrape that fails gets a 500 and one log line, not a traceback per scrape."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return list(app(environ, start_response))
        except Exception as exc:  # noqa: BLE001 -- any failure: Prometheus marks the target down
            log.warning("metrics: scrape failed: %s", exc)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [f"scrape failed: {exc}\n".encode()]

    return guarded


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this the body waits for the
        # client's delayed ACK of the headers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in this request's thread, under the timeout

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class _Server(WSGIServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn): seconds on a Pi whose
        # resolver is away. The name only fills SERVER_NAME, which nothing here reads.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        # ThreadingMixIn without its bookkeeping: one short-lived thread per scrape.
        t = threading.Thread(
            target=self._serve_one, args=(request, client_address), daemon=True, name="metrics"
        )
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # noqa: BLE001 -- a bad client is not worth a traceback
            log.debug("metrics: request from %s failed: %s", client_address, exc)
        finally:
            self.shutdown_request(request)


class MetricsServer:
    """Serves ``registry`` on ``listen`` until ``close()``; binds at once (raises OSError)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        listen: str,
        *,
        username: str | None = None,
        password: str | bytes | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        from gatewayd.metrics.text import TextFormat

        if (username is None) != (password is None):
            raise ValueError("basic auth needs both a username and a password")
        if (certfile is None) != (keyfile is None):
            raise ValueError("TLS needs both a certificate and its key")
        host, port = parse_listen(listen)
        app: App = failing_soft(TextFormat().wsgi_app(registry))
        if username is not None and password is not None:
            app = basic_auth(app, username, password)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(_Server):
            address_family = family

        self.httpd = Server((host, port), _Handler)
        self.tls = certfile is not None
        if certfile is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(certfile, keyfile)
            self.httpd.socket = ctx.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.httpd.set_app(app)
        self.host, self.port = host, int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("metrics on %s%s", self.url, " (basic auth)" if username is not None else "")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2.0)
