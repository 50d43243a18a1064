"""Scrape cost of a 50-device gateway (issue 9): 16 charging piles of 12 ports, 30 smoke
detectors and 4 door locks, filled the way the drivers fill them (tests/metrics_site.py).

- collect + exposition: what one scrape costs the daemon, against a baseline of
  prometheus_client formatting the very same families pre-built (its own floor);
- the part that runs on the event loop (building the families), i.e. how long a scrape can
  hold up the daemon's event handling;
- a real HTTP scrape through the endpoint, the families built on the gateway's event loop;
- the exposition's size, plain and gzip (Prometheus asks for gzip).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.common import percentile, row


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class _Static:
    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Any]:
        return self.families


def run(quick: bool) -> list[dict[str, Any]]:
    from prometheus_client import CollectorRegistry, generate_latest

    from gatewayd import metrics
    from gatewayd.metrics.families import build
    from tests.metrics_site import close_gateway, fill, make_gateway

    n = 50 if quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        gw = make_gateway(Path(tmp), chargers=16, detectors=30, locks=4)
        handle = metrics.serve(gw, "")
        try:
            fill(gw)
            gc.freeze()  # as the daemon does once it is up
            body = handle.exposition()
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            scrape = _timed(handle.exposition, n)
            on_loop = _timed(lambda: build(gw.snapshot(), handle.counters), n)
            static = CollectorRegistry()
            static.register(_Static(build(gw.snapshot(), handle.counters)))  # type: ignore[arg-type]
            floor = _timed(lambda: generate_latest(static), n)
            pushes, push_sizes = _pushes(handle, n)
        finally:
            handle.close()
        http = _http_scrapes(gw, n)
        close_gateway(gw)
    devices = 16 + 30 + 4
    p50, p99 = percentile(scrape, 50) * 1e3, percentile(scrape, 99) * 1e3
    return [
        row(f"scrape, collect + exposition, {devices} devices ({series} series) p50", p50, "ms",
            "prometheus_client formatting the same families pre-built", statistics.median(floor) * 1e3,
            target="<= 10 ms", ok=p50 <= 10),
        row(f"scrape, collect + exposition, {devices} devices p99", p99, "ms", target="<= 10 ms", ok=p99 <= 10),
        row("scrape: time on the event loop (building the families) p50", percentile(on_loop, 50) * 1e3, "ms"),
        row("scrape over HTTP, families built on the gateway's event loop, p50", percentile(http, 50) * 1e3, "ms",
            target="<= 10 ms", ok=percentile(http, 50) <= 0.010),
        row("scrape over HTTP, p99", percentile(http, 99) * 1e3, "ms"),
        row(f"scrape size, {devices} devices", len(body) / 1024, "KB", target="<= 64 KB", ok=len(body) <= 64 * 1024),
        row(f"scrape size gzip, {devices} devices", len(gzip.compress(body)) / 1024, "KB"),
        row(f"push ([metrics] push_seconds): collect + encode a frame on the event loop, {devices} devices, p50",
            percentile(pushes, 50) * 1e3, "ms", "the scrape's collect + exposition, same run", p50),
        row("push: collect + encode, p99", percentile(pushes, 99) * 1e3, "ms"),
        row(f"push: keyframe, {devices} devices", push_sizes[0] / 1024, "KB", "the scrape gzip'd",
            len(gzip.compress(body)) / 1024),
    ]  # fmt: skip


def _pushes(handle: Any, n: int) -> tuple[list[float], list[int]]:
    """What the pusher does each period (gatewayd/metrics/push.py's loop, without the sleep):
    collect, diff against the frame before, deflate. The first frame is the keyframe."""
    from gatewayd.metrics.push import Encoder, series_of

    enc, sizes = Encoder(60.0, keyframe_every=n + 2), []

    def one() -> None:
        keys, values = series_of(handle.registry)
        sizes.append(len(enc.payload(enc.frame(keys, values, time.time()))))

    return _timed(one, n), sizes


_CLIENT = """
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
urllib.request.urlopen(url, timeout=5).read()  # warm up
times = []
for _ in range(n):
    t0 = time.perf_counter()
    urllib.request.urlopen(url, timeout=5).read()
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def _http_scrapes(gw: Any, n: int) -> list[float]:
    """Serve ``gw`` from an event loop in a thread, as the daemon does, and scrape it."""
    from gatewayd import metrics

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def attach() -> Any:
        return metrics.serve(gw, "127.0.0.1:0")

    handle = asyncio.run_coroutine_threadsafe(attach(), loop).result(10)
    try:
        # The client is another process, as Prometheus is: in this one it would compete with
        # the server for the interpreter lock and its time would count as the gateway's.
        out = subprocess.run(
            [sys.executable, "-c", _CLIENT, handle.server.url, str(n)],
            capture_output=True, check=True, timeout=300,
        )  # fmt: skip
        return list(json.loads(out.stdout))
    finally:
        handle.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
