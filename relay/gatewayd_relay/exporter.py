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

#: A gateway is stale after this many of its push periods without a frame (a push late by
#: a reconnect is not a gateway down): 7.5 min at the suggested 180 s, then GatewayDown's
#: 10 min.
STALE_PERIODS = 2.5
#: The period assumed before a gateway's first keyframe says its own (the suggested one).
DEFAULT_PERIOD = 180.0
#: A gateway clock further off than this is not believed: its samples are stamped with the
#: time they arrived (Prometheus refuses samples far in the past, and a Pi without a real-time
#: clock may boot in 1970 before NTP answers).
MAX_SKEW = 300.0
#: Inflated frames larger than this are refused (a house's keyframe is ~12 KB of JSON).
MAX_FRAME = 4 * 1024 * 1024
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
OWN_PREFIX = "gatewayd_push_"  # the exporter's own series; no gateway exports such a name

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


def decode(payload: bytes, zdict: bytes = b"") -> tuple[dict[str, Any], bytes]:
    """The frame in ``payload`` and its JSON text: JSON, or its raw deflate (a delta's with
    the frame before it, ``zdict``, as the preset dictionary; a keyframe's needs none)."""
    try:
        if payload[:1] != b"{":
            z = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)
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
    return frame, payload


@dataclass
class Gateway:
    """One gateway's latest samples: sample i is ``lines[i]`` (its name and labels) with
    ``values[i]`` (None while the gateway does not have it), of family ``family_of[i]``."""

    id: str
    period: float = DEFAULT_PERIOD
    seq: int = -1  # the last frame applied; -1: none since the last keyframe was lost
    t: int = 0  # its clock, ms
    heard: float = -math.inf  # when the last frame arrived (our clock, s)
    skew: float = 0.0  # its clock minus ours, s
    types: dict[str, str] = field(default_factory=dict)  # family -> type
    family_of: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    values: list[str | None] = field(default_factory=list)
    text: bytes = b""  # the last frame's JSON: the next delta's preset dictionary

    def keyframe(self, frame: Mapping[str, Any], ours: Mapping[str, str]) -> None:
        """Take a keyframe; ``ours`` are the labels every sample gets (replacing its own)."""
        if frame.get("v") != 1:
            raise BadFrame(f"format version {frame.get('v')!r}")
        period, fams = frame.get("p"), frame.get("f")
        if isinstance(period, bool) or not isinstance(period, int | float) or period <= 0:
            raise BadFrame("no period")
        if not isinstance(fams, list):
            raise BadFrame("no families")
        fresh = Gateway(self.id, float(period))
        for fam in fams:
            if not (isinstance(fam, list) and len(fam) == 3 and isinstance(fam[2], list)):
                raise BadFrame("a family is not [name, type, samples]")
            if not _family_ok(fam[0], fam[1]):
                raise BadFrame(f"family {fam[0]!r} of type {fam[1]!r}")
            for s in fam[2]:
                if not (isinstance(s, list) and len(s) == 3):
                    raise BadFrame(f"a sample of {fam[0]!r} is not [suffix, labels, value]")
                fresh.add(ours, fam[0], fam[1], *s)
        self.period, self.types, self.family_of = fresh.period, fresh.types, fresh.family_of
        self.lines, self.values = fresh.lines, fresh.values

    def add(
        self, ours: Mapping[str, str], name: Any, mtype: Any, suffix: Any, flat: Any, value: Any
    ) -> None:
        """One more sample (of a keyframe, or added by a delta)."""
        if not _family_ok(name, mtype):
            raise BadFrame(f"family {name!r} of type {mtype!r}")
        sample = f"{name}{suffix}" if isinstance(suffix, str) else ""
        if not _NAME.fullmatch(sample) or not isinstance(flat, list) or len(flat) % 2:
            raise BadFrame(f"sample {sample!r} of {name}")
        line = sample + _labels(flat, ours)
        self.values.append(render_value(value))
        self.lines.append(line)
        self.family_of.append(name)
        self.types.setdefault(name, mtype)

    def delta(self, frame: Mapping[str, Any], ours: Mapping[str, str]) -> None:
        d, added = frame.get("d"), frame.get("a", [])
        if not isinstance(d, list) or len(d) % 2 or not isinstance(added, list):
            raise BadFrame("no delta")
        grown = Gateway(self.id, self.period, types=dict(self.types),
                        family_of=list(self.family_of), lines=list(self.lines),
                        values=list(self.values))  # fmt: skip
        for new in added:
            if not (isinstance(new, list) and len(new) == 5):
                raise BadFrame("an added sample is not [family, type, suffix, labels, value]")
            grown.add(ours, *new)
        for i, v in zip(d[::2], d[1::2], strict=True):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.values):
                raise BadFrame(f"index {i!r}")
            grown.values[i] = None if v is None else render_value(v)
        self.types, self.family_of = grown.types, grown.family_of
        self.lines, self.values = grown.lines, grown.values


def _family_ok(name: Any, mtype: Any) -> bool:
    """A family a gateway may push: a valid name of a known type, none of the exporter's own
    (a second TYPE line for one name would fail the whole scrape, every gateway's)."""
    return (
        isinstance(name, str)
        and _NAME.fullmatch(name) is not None
        and mtype in TYPES
        and not name.startswith(OWN_PREFIX)
    )


def _labels(flat: list[Any], ours: Mapping[str, str]) -> str:
    """``{a="1",...}``: the sample's labels (those we set replaced by ours) and ours."""
    out = []
    for k, v in zip(flat[::2], flat[1::2], strict=True):
        if not (isinstance(k, str) and _LABEL.fullmatch(k) and isinstance(v, str)):
            raise BadFrame(f"label {k!r}")
        if k not in ours:
            out.append(f'{k}="{_escape(v)}"')
    out.extend(f'{k}="{_escape(v)}"' for k, v in sorted(ours.items()))
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
        gw = self.gateways.get(gid)
        if gw is not None:
            gw.heard = now  # even a frame it cannot read yet says the gateway is alive
        try:
            frame, text = decode(payload, gw.text if gw is not None and gw.seq >= 0 else b"")
        except BadFrame as exc:
            # Not a frame, or a delta deflated against one this process did not get: the
            # deltas that follow cannot be read either. Wait for the next keyframe. (While
            # waiting, a deflated payload is most likely such a delta: not counted.)
            if (gw is not None and gw.seq >= 0) or payload[:1] == b"{":
                self.rejected += 1
            if gw is not None:
                gw.seq = -1
            log.debug("metrics of %s unreadable: %s", gid, exc)
            return
        gw = self.gateways.setdefault(gid, Gateway(gid))
        gw.heard = now
        try:
            if "f" in frame:
                gw.keyframe(frame, self.labels(gid))
            elif frame["n"] == gw.seq + 1 and gw.seq >= 0:
                gw.delta(frame, self.labels(gid))
            else:  # a frame was lost (or we started late): wait for the next keyframe
                self.gaps += gw.seq >= 0
                gw.seq = -1
                return
        except BadFrame as exc:
            self.rejected += 1
            log.debug("metrics of %s refused: %s", gid, exc)
            return
        gw.seq, gw.t, gw.text = frame["n"], frame["t"], text
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
            for name, line, value in zip(gw.family_of, gw.lines, gw.values, strict=True):
                if value is not None:
                    by_family.setdefault(name, (gw.types[name], []))[1].append(
                        f"{line} {value} {t}\n"
                    )
        out = [
            "# HELP gatewayd_push_up 1 while the gateway's pushed metrics arrive; 0 once they "
            "stopped (stale). Renamed to up by the scrape config.\n# TYPE gatewayd_push_up gauge\n",
            *up,
            "# HELP gatewayd_push_clock_skew_seconds The gateway's clock minus the exporter's, "
            "at its last frame.\n# TYPE gatewayd_push_clock_skew_seconds gauge\n",
            *skew,
            "# HELP gatewayd_push_frames_refused_total Payloads on the metrics topics that were "
            "not frames of the contract, or deltas against a frame this exporter did not get.\n# TYPE gatewayd_push_frames_refused_total counter\n"
            f"gatewayd_push_frames_refused_total {self.rejected}\n",
            "# HELP gatewayd_push_gaps_total Deltas that did not follow the frame before (lost "
            "in transit); the gateway waits for its next keyframe.\n"
            f"# TYPE gatewayd_push_gaps_total counter\ngatewayd_push_gaps_total {self.gaps}\n",
        ]
        for name, (mtype, lines) in by_family.items():
            out.append(f"# TYPE {name} {mtype}\n")
            out.extend(lines)
        return "".join(out).encode()
