"""Pushed metrics to Prometheus: each gateway's latest frames on ``{prefix}/<gateway>/metrics``
(shared/contract and docs/contract/schemas/metrics.json; written by gatewayd's
``[metrics] push_seconds``) kept here and served in the text exposition format.

Each gateway's samples carry its own clock (the frame's ``t``) and the labels a scrape of the
gateway would have had after the monitoring centre's relabelling: ``job``, ``instance`` and
``gateway`` (the gateway id), and its ``village`` and ``township`` from the inventory. The
centre scrapes this with ``honor_labels: true``, so the alert and recording rules see the same
series as when they scraped the gateway (docs/monitoring.md). ``gatewayd_push_up`` says whether
the gateway's frames are arriving (1) or stopped (0, "stale"); the scrape config renames it to
``up``, so GatewayDown works unchanged. A stale gateway's samples are no longer served: their
last timestamps would only age out of Prometheus's look-back anyway.

Nothing here trusts the payload: names and labels are checked, values re-rendered, and an
inflated frame is capped. Pure state and text; no I/O (exporter_serve.py has the sockets).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gatewayd_relay.exporter")

#: A gateway is stale after this many of its push periods without a frame (one lost frame,
#: or a slow reconnect, is not a gateway down).
STALE_PERIODS = 3.0
#: The period assumed before a gateway's first keyframe says its own.
DEFAULT_PERIOD = 120.0
#: A gateway clock further off than this is not believed: its samples are stamped with the
#: time they arrived (Prometheus refuses samples far in the past, and a Pi without a real-time
#: clock may boot in 1970 before NTP answers).
MAX_SKEW = 300.0
#: Inflated frames larger than this are refused (a house's keyframe is ~12 KB of JSON).
MAX_FRAME = 4 * 1024 * 1024
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class BadFrame(ValueError):
    """A payload that is not a frame of the contract: ignored."""


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render_value(v: Any) -> str:
    """A frame's value as the text format writes it (NaN, +Inf, -Inf as words)."""
    if isinstance(v, str):
        if v not in ("NaN", "+Inf", "-Inf"):
            raise BadFrame(f"value {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadFrame(f"value {v!r}")
    if isinstance(v, int):
        return str(v)
    return repr(v) if math.isfinite(v) else ("NaN" if math.isnan(v) else "+Inf")


def decode(payload: bytes) -> dict[str, Any]:
    """The frame in ``payload``: JSON, or its raw deflate."""
    try:
        if payload[:1] != b"{":
            z = zlib.decompressobj(-15)
            payload = z.decompress(payload, MAX_FRAME)
            if z.unconsumed_tail:
                raise BadFrame("frame too large")
        frame = json.loads(payload)
    except (zlib.error, ValueError) as exc:
        raise BadFrame(str(exc)) from None
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), int):
        raise BadFrame("not a frame")
    if not isinstance(frame.get("n"), int):
        raise BadFrame("no sequence number")
    return frame


@dataclass
class Gateway:
    """One gateway's latest samples: ``lines[i]`` is the text before the value of sample i."""

    id: str
    period: float = DEFAULT_PERIOD
    seq: int = -1  # the last frame applied; -1: none since the last keyframe was lost
    t: int = 0  # its clock, ms
    heard: float = -math.inf  # when the last frame arrived (our clock, s)
    skew: float = 0.0  # its clock minus ours, s
    families: list[tuple[str, str, range]] = field(default_factory=list)  # name, type, samples
    lines: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def keyframe(self, frame: Mapping[str, Any], ours: Mapping[str, str]) -> None:
        """Take a keyframe; ``ours`` are the labels every sample gets (replacing its own)."""
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(ours.items()))
        if frame.get("v") != 1:
            raise BadFrame(f"format version {frame.get('v')!r}")
        period, fams = frame.get("p"), frame.get("f")
        if isinstance(period, bool) or not isinstance(period, int | float) or period <= 0:
            raise BadFrame("no period")
        if not isinstance(fams, list):
            raise BadFrame("no families")
        families: list[tuple[str, str, range]] = []
        lines: list[str] = []
        values: list[str] = []
        for fam in fams:
            if not (isinstance(fam, list) and len(fam) == 3 and isinstance(fam[2], list)):
                raise BadFrame("a family is not [name, type, samples]")
            name, mtype, samples = fam
            if not (isinstance(name, str) and _NAME.fullmatch(name) and mtype in TYPES):
                raise BadFrame(f"family {name!r} of type {mtype!r}")
            start = len(lines)
            for s in samples:
                if not (isinstance(s, list) and len(s) == 3 and isinstance(s[1], list)):
                    raise BadFrame(f"a sample of {name} is not [suffix, labels, value]")
                suffix, flat, value = s
                sample = f"{name}{suffix}" if isinstance(suffix, str) else ""
                if not _NAME.fullmatch(sample) or len(flat) % 2:
                    raise BadFrame(f"sample {sample!r} of {name}")
                lines.append(sample + _labels(flat, ours, text))
                values.append(render_value(value))
            families.append((name, mtype, range(start, len(lines))))
        self.period, self.families, self.lines, self.values = float(period), families, lines, values

    def delta(self, frame: Mapping[str, Any]) -> None:
        d = frame.get("d")
        if not isinstance(d, list) or len(d) % 2:
            raise BadFrame("no delta")
        values = list(self.values)
        for i, v in zip(d[::2], d[1::2], strict=True):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(values):
                raise BadFrame(f"index {i!r}")
            values[i] = render_value(v)
        self.values = values


def _labels(flat: list[Any], ours: Mapping[str, str], text: str) -> str:
    """``{a="1",...}``: the sample's labels (those we set replaced by ours) and ours."""
    out = []
    for k, v in zip(flat[::2], flat[1::2], strict=True):
        if not (isinstance(k, str) and _LABEL.fullmatch(k) and isinstance(v, str)):
            raise BadFrame(f"label {k!r}")
        if k not in ours:
            out.append(f'{k}="{_escape(v)}"')
    out.append(text)
    return "{" + ",".join(out) + "}"


class Exporter:
    """Every gateway's latest frames, and the exposition of them."""

    def __init__(
        self,
        prefix: str,
        job: str = "gatewayd",
        inventory: str | None = None,
        stale_after: float | None = None,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.job = job
        self.inventory_path = inventory
        self.stale_after = stale_after
        self.gateways: dict[str, Gateway] = {}
        self.places: dict[str, dict[str, str]] = {}  # gateway -> village, township
        self._inventory_mtime: float | None = None
        self.rejected = 0
        self.gaps = 0
        self.reload()

    def reload(self) -> None:
        """Read the inventory again if it changed (called before each exposition)."""
        if self.inventory_path is None:
            return
        try:
            mtime = os.stat(self.inventory_path).st_mtime
            if mtime == self._inventory_mtime:
                return
            with open(self.inventory_path, encoding="utf-8-sig", newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as exc:
            log.warning("inventory %s: %s (keeping the last one read)", self.inventory_path, exc)
            return
        places = {}
        for row in rows:
            gid = (row.get("gateway_id") or "").strip()
            if _ID.fullmatch(gid):
                places[gid] = {k: (row.get(k) or "").strip() for k in ("village", "township")}
        self.places, self._inventory_mtime = places, mtime
        for gid in places:
            self.gateways.setdefault(gid, Gateway(gid))
        log.info("inventory %s: %d gateways", self.inventory_path, len(places))

    def gateway_of(self, topic: str) -> str | None:
        head, tail = f"{self.prefix}/", "/metrics"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        gid = topic[len(head) : -len(tail)]
        return gid if _ID.fullmatch(gid) else None

    def labels(self, gid: str) -> dict[str, str]:
        """The labels every series of ``gid`` gets."""
        place = {k: v for k, v in self.places.get(gid, {}).items() if v}
        return {"job": self.job, "instance": gid, "gateway": gid, **place}

    def receive(self, topic: str, payload: bytes, now: float) -> None:
        """One message from the broker (``now``: our Unix time)."""
        gid = self.gateway_of(topic)
        if gid is None:
            return
        try:
            frame = decode(payload)
            gw = self.gateways.setdefault(gid, Gateway(gid))
            if "f" in frame:
                gw.keyframe(frame, self.labels(gid))
            elif frame["n"] == gw.seq + 1 and gw.seq >= 0:
                gw.delta(frame)
            else:  # a frame was lost (or we started late): wait for the next keyframe
                if gw.seq >= 0:
                    self.gaps += 1
                gw.seq = -1
                gw.heard = now
                return
        except BadFrame as exc:
            self.rejected += 1
            log.debug("metrics of %s refused: %s", gid, exc)
            return
        gw.seq, gw.t, gw.heard = frame["n"], frame["t"], now
        gw.skew = frame["t"] / 1000 - now

    def stale(self, gw: Gateway, now: float) -> bool:
        limit = self.stale_after or STALE_PERIODS * gw.period
        return now - gw.heard > limit

    def exposition(self, now: float) -> bytes:
        """Every gateway's samples (fresh ones), with the push's own series."""
        self.reload()
        by_family: dict[str, tuple[str, list[str]]] = {}
        up, skew = [], []
        for gid in sorted(self.gateways):
            gw = self.gateways[gid]
            ours = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in self.labels(gid).items()) + "}"
            fresh = not self.stale(gw, now)
            up.append(f"gatewayd_push_up{ours} {int(fresh)}\n")
            if not fresh or gw.seq < 0:
                continue
            skew.append(f"gatewayd_push_clock_skew_seconds{ours} {gw.skew:.3f}\n")
            t = gw.t if abs(gw.skew) <= MAX_SKEW else int(gw.heard * 1000)
            for name, mtype, rows in gw.families:
                lines = by_family.setdefault(name, (mtype, []))[1]
                lines.extend(f"{gw.lines[i]} {gw.values[i]} {t}\n" for i in rows)
        out = [
            "# HELP gatewayd_push_up 1 while the gateway's pushed metrics arrive; 0 once they "
            "stopped (stale). Renamed to up by the scrape config.\n# TYPE gatewayd_push_up gauge\n",
            *up,
            "# HELP gatewayd_push_clock_skew_seconds The gateway's clock minus the exporter's, "
            "at its last frame.\n# TYPE gatewayd_push_clock_skew_seconds gauge\n",
            *skew,
            "# HELP gatewayd_push_frames_refused_total Payloads on the metrics topics that were "
            "not frames of the contract.\n# TYPE gatewayd_push_frames_refused_total counter\n"
            f"gatewayd_push_frames_refused_total {self.rejected}\n",
            "# HELP gatewayd_push_gaps_total Deltas that did not follow the frame before (lost "
            "in transit); the gateway waits for its next keyframe.\n"
            f"# TYPE gatewayd_push_gaps_total counter\ngatewayd_push_gaps_total {self.gaps}\n",
        ]
        for name, (mtype, lines) in by_family.items():
            out.append(f"# TYPE {name} {mtype}\n")
            out.extend(lines)
        return "".join(out).encode()
