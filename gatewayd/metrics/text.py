"""The Prometheus text exposition (format 0.0.4), written for this daemon's scrape budget.

prometheus_client's ``generate_latest`` validates and escapes every label name and value of
every sample on every scrape: about 10 µs a sample, most of a 50-device gateway's 10 ms budget.
Here a label set's text is made once and remembered, since the same devices, ports and reasons
come back on every scrape. The output is ``generate_latest``'s text, byte for byte (a test
compares them); the endpoint always answers in this format, which every Prometheus
accepts whatever its Accept header prefers.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.utils import floatToGoString as _untyped_go_float

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Label sets remembered; a gateway has a few thousand at most (bounded cardinality), so this
#: only stops a misbehaving collector from growing the cache without end.
LABEL_CACHE_MAX = 50_000

StartResponse = Callable[..., Any]
_go_float: Callable[[float], str] = _untyped_go_float  # Go's float text, as Prometheus reads

_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIXES = {"counter": "_total", "info": "_info"}
_SEPARATE = ("_created", "_gsum", "_gcount")  # OpenMetrics samples, shown as gauges at the end


def _escape_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class TextFormat:
    """Formats a registry's families; keeps label texts between scrapes."""

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}

    def _labelstr(self, labels: dict[str, str]) -> str:
        if not labels:
            return ""
        key = tuple(sorted(labels.items()))
        text = self._labels.get(key)
        if text is None:
            text = "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in key) + "}"
            if len(self._labels) >= LABEL_CACHE_MAX:
                self._labels.clear()
            self._labels[key] = text
        return text

    def exposition(self, registry: Collector) -> bytes:
        out: list[str] = []
        label = self._labelstr
        for metric in registry.collect():
            name, mtype = metric.name, metric.type
            shown = name + _SUFFIXES.get(mtype, "")
            doc = _help(metric.documentation)
            out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {_TYPES.get(mtype, mtype)}\n")
            separate: dict[str, list[str]] = {}
            for s in metric.samples:
                line = f"{s.name}{label(s.labels)} {_go_float(s.value)}"
                if s.timestamp is not None:
                    line += f" {int(float(s.timestamp) * 1000):d}"
                suffix = s.name[len(name) :] if s.name.startswith(name) else ""
                if suffix in _SEPARATE:
                    separate.setdefault(suffix, []).append(line + "\n")
                else:
                    out.append(line + "\n")
            for suffix, lines in sorted(separate.items()):
                out.append(f"# HELP {name}{suffix} {doc}\n# TYPE {name}{suffix} gauge\n")
                out.extend(lines)
        return "".join(out).encode()

    def wsgi_app(
        self, registry: Collector
    ) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        """A WSGI app serving ``registry`` (gzip when the client asks, as Prometheus does)."""

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
                start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
                return [b"use GET\n"]
            if environ.get("PATH_INFO", "/") == "/favicon.ico":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found\n"]
            body = self.exposition(registry)
            headers = [("Content-Type", CONTENT_TYPE)]
            if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
                body = gzip.compress(body, compresslevel=1)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]

        return app
