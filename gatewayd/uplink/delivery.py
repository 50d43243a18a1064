"""How long critical events take to reach the platform: from the frame to the broker's PUBACK.

One histogram per gateway, fed by the outbox when the broker acknowledges a message of the
``CRITICAL`` lane. The clock starts at the event's ``ts`` (set when the driver decoded the
frame, or when a rule derived the event from it), so an event that waited out an outage
counts the whole wait: the question is how late the monitoring centre heard of the fire, and
GB 50440 gives a fire alarm 10 s to get there. A critical event acknowledged twice (its
PUBACK lost in a crash, sent again after the restart) counts twice; one never acknowledged
(dropped as damaged on the SD card) never counts.

Pure bookkeeping: no I/O, no prometheus_client (metrics turns ``figures()`` into the
``gatewayd_critical_delivery_seconds`` histogram at scrape time).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

#: Upper bounds, in seconds: fine below a second (what a connected gateway does), 10 s (the
#: standard's limit, so an alert can count what exceeded it exactly), then outages.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)


@dataclass(frozen=True, slots=True)
class DeliveryFigures:
    """A histogram's state at one moment: cumulative counts per upper bound (the last is
    +Inf), their sum in seconds."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0


class DeliveryTimes:
    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            return
        seconds = max(0.0, seconds)  # a ts a hair ahead of this clock is "at once", not < 0
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def figures(self) -> DeliveryFigures:
        running, out = 0, []
        for n in self._counts:
            running += n
            out.append(running)
        return DeliveryFigures((*self.bounds, math.inf), tuple(out), self._sum)
