"""Pushed metrics (``[metrics] push_seconds``): the scrape's families, sent over the MQTT link
to ``{root}/metrics`` for a gateway no Prometheus can reach (a 4G router's NAT, no VPN).

A 4G card paid per MB decides the shape. A keyframe names every series once (family, type,
labels, value; no HELP: 1.1 KB deflated for a house, against 2.6 KB for the gzip'd exposition
text); each push after it carries only the values that changed since the push before, by
their index in the keyframe, and the series that appeared (a quiet house: tens of bytes),
deflated against the frame before it. A keyframe goes on the first push of each connection
and every ``KEYFRAME_SECONDS``, so a receiver that starts late, or missed a push (QoS 0
is lost only with the connection, and a new connection starts with a keyframe), is complete
again within that many. Every frame carries the gateway's clock (``t``, ms) and a sequence
number (``n``): a delta applies only on top of its predecessor. The payload is the JSON
object, or its raw deflate when that is smaller (a receiver tells them apart by the first
byte: ``{``). docs/monitoring.md says why, with bytes.

Built on the event loop from the same families the endpoint serves (``MetricsHandle.registry``);
it never touches a device. QoS 0, never retained, never through the durable outbox: a lost
snapshot is replaced by the next one, and an outage must not fill the SD card with old ones.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from gatewayd.uplink.topics import dumps

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger("gatewayd.metrics")

#: A keyframe at least this often (seconds): a receiver that starts (or a replica that
#: joins) shows a gateway's series within the hour; a keyframe is most of a quiet house's
#: bytes (docs/benchmarks.md).
KEYFRAME_SECONDS = 3600.0
#: The format's version (``v`` of a keyframe); a receiver ignores frames of another.
VERSION = 1
#: What the text format calls a family's type (prometheus_client's names, as the endpoint
#: writes them; see gatewayd/metrics/text.py).
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIXES = {"counter": "_total", "info": "_info"}

Number = int | float | str
Series = tuple[str, str, str, tuple[str, ...]]  # family, type, sample suffix, flat labels


def number(value: float) -> Number:
    """A value as short JSON: an integer when it is one, the shortest float text, and the
    text format's words for what JSON cannot say (NaN, ±Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return int(value)
    return float(value)


def series_of(registry: Collector) -> tuple[list[Series], list[Number]]:
    """Every sample of one collection, in order: what it is, and its value."""
    keys: list[Series] = []
    values: list[Number] = []
    for metric in registry.collect():
        shown = metric.name + _SUFFIXES.get(metric.type, "")
        mtype = _TYPES.get(metric.type, metric.type)
        for s in metric.samples:
            if s.name.startswith(shown):
                fam, suffix = shown, s.name[len(shown) :]
            else:  # OpenMetrics extras (_created): their own gauge, as the endpoint shows them
                fam, suffix, mtype = s.name, "", "gauge"
            flat = tuple(x for kv in sorted(s.labels.items()) for x in kv)
            keys.append((fam, mtype, suffix, flat))
            values.append(number(s.value))
    return keys, values


class Encoder:
    """Frames of successive collections: a keyframe, then deltas against the previous frame.

    The series a delta speaks of are the keyframe's and those added since (``a``: a port that
    started charging shows a new state label); one that is gone is ``null`` until it is back
    or the next keyframe leaves it out. A changing set of series costs an addition, not a
    keyframe. (Deltas against the keyframe, which a receiver could apply after a loss, came
    to 1.6 x the bytes in the uplink benchmark's house: charging ports move every value.)"""

    def __init__(self, period: float, keyframe_every: int | None = None) -> None:
        self.period = period
        self.keyframe_every = keyframe_every or max(1, round(KEYFRAME_SECONDS / period))
        self.seq = 0
        self._index: dict[Series, int] | None = None
        self._values: list[Number | None] = []
        self._since_key = 0
        self._text = b""

    def payload(self, frame: dict[str, Any]) -> bytes:
        """``frame`` on the wire. A delta is deflated with the frame before it as the preset
        dictionary (a receiver that can apply it has that frame; a third fewer bytes on the
        benchmark's house), a keyframe with none (a receiver may have nothing)."""
        payload = encode(frame, b"" if "f" in frame else self._text)
        self._text = dumps(frame)
        return payload

    def restart(self) -> None:
        """The next frame is a keyframe (a new connection: receivers may have missed frames)."""
        self._index = None

    def frame(self, keys: list[Series], values: list[Number], now: float) -> dict[str, Any]:
        self.seq += 1
        t = int(now * 1000)
        if self._index is None or self._since_key + 1 >= self.keyframe_every:
            self._index, self._since_key = {k: i for i, k in enumerate(keys)}, 0
            self._values = list(values)
            return {"v": VERSION, "t": t, "n": self.seq, "p": self.period,
                    "f": _families(keys, values)}  # fmt: skip
        self._since_key += 1
        index = self._index
        now_values: list[Number | None] = [None] * len(self._values)
        added: list[list[Any]] = []
        for k, v in zip(keys, values, strict=True):
            i = index.get(k)
            if i is None:
                index[k] = len(now_values)
                now_values.append(v)
                added.append([k[0], k[1], k[2], list(k[3]), v])
            else:
                now_values[i] = v
        d: list[Number | None] = []
        known = now_values[: len(self._values)]  # the added ones are in ``a``
        for i, (old, new) in enumerate(zip(self._values, known, strict=True)):
            if old != new:
                d += (i, new)
        self._values = now_values
        out: dict[str, Any] = {"t": t, "n": self.seq, "d": d}
        if added:
            out["a"] = added
        return out


def _families(keys: list[Series], values: list[Number]) -> list[list[Any]]:
    """[[family, type, [[suffix, [label, value, ...], value], ...]], ...], samples in order."""
    out: list[list[Any]] = []
    for (fam, mtype, suffix, flat), value in zip(keys, values, strict=True):
        if not out or out[-1][0] != fam:
            out.append([fam, mtype, []])
        out[-1][2].append([suffix, list(flat), value])
    return out


def encode(frame: dict[str, Any], zdict: bytes = b"") -> bytes:
    """The payload: the JSON, or its raw deflate (with ``zdict``, the frame before it, as
    the preset dictionary) when that is smaller."""
    text = dumps(frame)
    z = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=zdict) if zdict else None
    z = z or zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = z.compress(text) + z.flush()
    return packed if len(packed) < len(text) else text


class Link(Protocol):
    """What the pusher needs of the MQTT link."""

    connected: bool
    connects: int

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> int | None: ...


async def push(
    registry: Collector,
    link: Link,
    topic: str,
    period: float,
    clock: Callable[[], float] = time.time,
    sent: Callable[[bytes], None] | None = None,
    on_lag: Callable[[float], None] | None = None,
) -> None:
    """Publish ``registry``'s samples on ``topic`` every ``period`` seconds while connected;
    runs until cancelled. ``sent`` sees each payload (tests, the benchmark); ``on_lag`` is
    told how late the loop woke this push (the endpoint's gatewayd_event_loop_lag_seconds)."""
    loop = asyncio.get_running_loop()
    enc = Encoder(period)
    connects = -1
    due = loop.time()
    while True:
        due += period
        await asyncio.sleep(max(0.0, due - loop.time()))
        late = max(0.0, loop.time() - due)
        if late > period:  # the loop was stuck (or the clock jumped): start the beat afresh
            due = loop.time()
        if on_lag is not None:
            on_lag(late)
        if not link.connected:
            continue
        if link.connects != connects:  # a new connection: receivers may have lost the thread
            connects = link.connects
            enc.restart()
        try:
            keys, values = series_of(registry)
        except Exception as exc:  # noqa: BLE001 -- the endpoint's scrape fails alike (logged)
            log.warning("metrics push: collection failed: %s", exc)
            continue
        payload = enc.payload(enc.frame(keys, values, clock()))
        link.publish(topic, payload, qos=0, retain=False)
        if sent is not None:
            sent(payload)


def frames(payloads: Iterable[bytes]) -> list[dict[str, Any]]:
    """The frames of successive ``payloads`` of one gateway, none lost (tests and the
    benchmark read what was sent)."""
    import json

    out: list[dict[str, Any]] = []
    previous = b""
    for p in payloads:
        z = zlib.decompressobj(-15, zdict=previous) if previous else zlib.decompressobj(-15)
        out.append(json.loads(p if p[:1] == b"{" else z.decompress(p)))
        previous = dumps(out[-1])  # the text the encoder deflated the next one against
    return out
