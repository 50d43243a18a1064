"""Prometheus metrics: the gateway's in-memory state as metric families, built at scrape time.

A scrape reads what the daemon already holds (device states, alarms, counters); it never
touches a device, so its cost stays flat however slow a bus is. The families are built on the
event loop in one go (a consistent picture, no locks) and formatted in the HTTP server's
thread. Labels are bounded: device ids, buses, rule names, result codes; never a user id,
never free text from the wire. prometheus_client is imported lazily, so start-up stays fast.

Drivers MAY offer two cheap, non-blocking methods the collector uses when present (see
docs/monitoring.md): ``stats() -> Mapping[str, float]`` (``requests_total``, ``errors_total``,
``timeouts_total``, ``utilisation_ratio``) and ``last_seen() -> Mapping[str, float]``
(device id -> Unix time the device last answered).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gatewayd.errors import GatewayError
from gatewayd.family import Family
from gatewayd.metrics.families import EventCounters, build
from gatewayd.metrics.snapshot import Snapshot
from gatewayd.model import Event

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from gatewayd.config import Config
    from gatewayd.metrics.http import MetricsServer
    from gatewayd.metrics.push import Link

log = logging.getLogger("gatewayd.metrics")

#: Seconds a scrape waits for the event loop to take its snapshot; longer means a stuck
#: loop, and the scrape fails (Prometheus then sees the target down).
LOOP_TIMEOUT = 2.0


class ScrapeError(GatewayError):
    """The scrape cannot be answered; the endpoint replies 500 and logs this one line."""


class Observed(Protocol):
    """What metrics may see of the daemon: a snapshot on demand, and its event stream."""

    config: Config
    families: Mapping[str, Family]
    listeners: list[Callable[[Event], None]]

    def snapshot(self) -> Snapshot: ...

    def family_of(self, device: str) -> Family | None: ...


class GatewayCollector:
    """prometheus_client custom collector over a running gateway's snapshots."""

    def __init__(self, snapshot: Callable[[], Snapshot], counters: EventCounters) -> None:
        import asyncio

        self.snapshot, self.counters = snapshot, counters
        try:
            self.loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None  # no loop (benchmarks, tools): collect in the caller's thread
        self.loop_thread = threading.get_ident()
        #: The loop lag a collection on the loop itself reports (the pusher's timer lateness,
        #: measured just before it collects); taken once.
        self.lag_on_loop: float | None = None

    def describe(self) -> list[Metric]:
        return []  # registering must not build every family

    def collect(self) -> Iterator[Metric]:
        loop = self.loop
        if loop is None or threading.get_ident() == self.loop_thread or loop.is_closed():
            lag, self.lag_on_loop = self.lag_on_loop, None
            yield from build(self.snapshot(), self.counters, loop_lag=lag)
            return
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()
        asked = time.perf_counter()

        def on_loop() -> None:
            lag = time.perf_counter() - asked
            try:
                done.set_result(build(self.snapshot(), self.counters, loop_lag=lag))
            except Exception as exc:  # noqa: BLE001 -- the scrape re-raises it (HTTP 500)
                done.set_exception(exc)

        loop.call_soon_threadsafe(on_loop)
        try:
            families = done.result(LOOP_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise ScrapeError(f"the event loop did not answer within {LOOP_TIMEOUT:g} s") from None
        yield from families


class MetricsHandle:
    """What ``attach`` returns: the registry, the HTTP server if any; ``close()`` undoes it."""

    def __init__(self, gw: Observed, server: MetricsServer | None = None) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        from gatewayd.metrics.text import TextFormat

        self.gw = gw
        self.counters = EventCounters(gw.families, gw.family_of)
        self.collector = GatewayCollector(gw.snapshot, self.counters)
        self.registry: CollectorRegistry = CollectorRegistry()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)  # RSS, CPU, open files of the daemon
        gw.listeners.append(self.counters)
        self.server = server
        self.text = TextFormat()

    def exposition(self) -> bytes:
        return self.text.exposition(self.registry)

    def push(self, link: Link, topic: str) -> Coroutine[Any, Any, None]:
        """The loop that publishes these metrics on ``topic`` every ``[metrics]
        push_seconds`` (run it as a task on the daemon's loop)."""
        from gatewayd.metrics.push import push

        def lag(seconds: float) -> None:
            self.collector.lag_on_loop = seconds

        period = self.gw.config.metrics_push_seconds
        return push(self.registry, link, topic, period, on_lag=lag)

    def close(self) -> None:
        if self.counters in self.gw.listeners:
            self.gw.listeners.remove(self.counters)
        if self.server is not None:
            self.server.close()
            self.server = None
        _attached.pop(self.gw, None)


_attached: weakref.WeakKeyDictionary[Any, MetricsHandle] = weakref.WeakKeyDictionary()


def serve(
    gateway: Observed,
    listen: str,
    *,
    username: str | None = None,
    password: str | bytes | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> MetricsHandle:
    """Count ``gateway``'s events and serve its metrics on ``listen`` ("host:port"; an empty
    string serves nothing). Call it on the daemon's event loop. Raises OSError if the port
    cannot be bound."""
    from gatewayd.metrics.http import MetricsServer

    handle = MetricsHandle(gateway)
    if listen:
        try:
            handle.server = MetricsServer(
                handle.registry, listen, username=username, password=password,
                certfile=certfile, keyfile=keyfile,
            )  # fmt: skip
        except BaseException:
            handle.close()
            raise
    return handle


def attach(gateway: Observed) -> MetricsHandle:
    """Metrics for the running daemon, as its config's ``[metrics]`` says; one per gateway
    (a second call returns the first handle). A port that cannot be bound is logged and
    the daemon runs on without metrics: monitoring must never stop safety."""
    existing = _attached.get(gateway)
    if existing is not None:
        return existing
    cfg = gateway.config
    opts: dict[str, Any] = {
        "username": cfg.metrics_username,
        "password": cfg.metrics_password.value if cfg.metrics_password else None,
        "certfile": cfg.metrics_cert_file,
        "keyfile": cfg.metrics_key_file,
    }
    try:
        handle = serve(gateway, cfg.metrics_listen, **opts)
    except OSError as exc:
        log.error("metrics: cannot listen on %s (%s); running without", cfg.metrics_listen, exc)
        handle = serve(gateway, "")
    _attached[gateway] = handle
    return handle


__all__ = ["EventCounters", "GatewayCollector", "MetricsHandle", "attach", "build", "serve"]
