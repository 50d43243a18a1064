"""The metric families of one scrape, built from a ``Snapshot`` of the gateway. Pure reads.

``CATALOGUE`` is every metric the gateway itself exports (name, labels, HELP); each device
family adds its own (``Family.metrics``) and writes them (``Family.export``): ``catalogue()``
is the whole list. ``build`` never touches a device or does I/O. ``EventCounters`` is the
event listener that keeps what state does not (cuts, unlocks, energy): each family counts its
own events into a ``Tally``. Labels stay bounded: never a user id, never free text from the
wire.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.commands.gate import CODES
from gatewayd.family import Family, Tally
from gatewayd.metrics.snapshot import Snapshot
from gatewayd.model import Event
from gatewayd.uplink.delivery import DeliveryFigures

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


def _num(value: Any) -> float | None:
    """A finite number from a state field, else None (missing, a broken sensor, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # NaN is "no reading"


class EventCounters:
    """Counts what events say and state does not keep; an event listener, run on the loop.
    Each family counts its own events (``Family.count``) into ``tally``."""

    def __init__(
        self, families: Mapping[str, Family], family_of: Callable[[str], Family | None]
    ) -> None:
        self.families = families
        self.family_of = family_of  # device id -> its family (the runtime's, live)
        self.tally = Tally()
        self.heard: dict[str, float] = {}  # device -> time of its latest own event

    def __call__(self, event: Event) -> None:
        family = self.family_of(event.device)
        if family is None:
            return  # the gateway's own events: nobody's device was heard
        spec = family.events.get(event.type)
        if spec is None or spec.from_device:
            self.heard[event.device] = max(event.ts, self.heard.get(event.device, 0.0))
        family.count(event, self.tally)


#: Every metric of the gateway itself: name -> (labels, HELP). One table, so names, labels and
#: help text are reviewed together (docs/monitoring.md lists the same). ``_total`` names are
#: counters.
CATALOGUE: Mapping[str, tuple[tuple[str, ...], str]] = {
    # the gateway
    "gatewayd_build_info": (("version", "gateway_id"), "Always 1; the labels say which gatewayd this is."),
    "gatewayd_start_time_seconds": ((), "When the daemon started (Unix time)."),
    "gatewayd_broker_connected": ((), "1 while the MQTT link to the platform's broker is up."),
    "gatewayd_broker_connects_total": ((), "Successful connections to the broker; growth means reconnects."),
    "gatewayd_broker_url_index": ((), "Which [mqtt] url the link is on, or tries next (0 = the first); a change means a failover to another broker node."),
    "gatewayd_event_loop_lag_seconds": ((), "How long this scrape waited for the daemon's event loop; high means the daemon is overloaded."),
    "gatewayd_fire_mode": ((), "1 while the house is in fire mode (ends only with fire_reset)."),
    "gatewayd_outbox_depth": ((), "Messages waiting for the broker's acknowledgement."),
    "gatewayd_outbox_oldest_age_seconds": ((), "Age of the oldest message not yet acknowledged by the broker."),
    "gatewayd_outbox_dropped_total": (("lane",), "Messages given up for lack of room (lane critical, urgent, info or telemetry); critical and urgent drops are lost safety events."),
    "gatewayd_outbox_disk_bytes": ((), "Bytes the outbox holds on the SD card while the broker is away."),
    "gatewayd_critical_delivery_seconds": ((), "Per critical event (a fire, a smoke alarm), seconds from its frame to the broker's acknowledgement, outages included; GB 50440 allows a fire alarm 10 s."),
    "gatewayd_outbox_damaged_records_total": ((), "Damaged outbox records (or runs of bytes) skipped since start: the SD card garbled what was stored; the rest was kept."),
    "gatewayd_command_results_total": (("code",), "Platform commands answered, by result code."),
    "gatewayd_rule_actions_total": (("rule",), "Actions (cuts, releases) started by a local rule."),
    "gatewayd_alarm_active": (("device", "type", "severity"), "Per alarm on the gateway's list: 1 while its condition is present, 0 once it is over (a latched alarm then awaits a person's reset)."),
    "gatewayd_alarm_awaiting_reset": (("device", "type", "severity"), "1 while a latched alarm (a safety trip) is over and waits for a person's reset; the port or device stays blocked until then."),
    "gatewayd_alarm_acknowledged": (("device", "type", "severity"), "1 once someone acknowledged the alarm; back to 0 when a new occurrence re-raises it."),
    "gatewayd_alarms_active": (("type", "severity"), "Alarms on the gateway's list, counted by type and severity."),
    # buses
    "gatewayd_bus_up": (("bus", "driver"), "1 while the bus's driver is running."),
    "gatewayd_driver_restarts_total": (("bus",), "Times the bus's driver failed and was restarted."),
    "gatewayd_bus_requests_total": (("bus",), "Requests the driver sent on this bus."),
    "gatewayd_bus_errors_total": (("bus",), "Requests answered with an error or a garbled reply."),
    "gatewayd_bus_timeouts_total": (("bus",), "Requests that got no reply in time."),
    "gatewayd_bus_utilisation_ratio": (("bus",), "Share of time the bus was busy, 0 to 1."),
    "gatewayd_bus_watched_piles": (
        ("bus",),
        "Charging piles under the charger watch (a port at or above watch_celsius): their powered ports are read every round, at a cost in line time.",
    ),
    # every device
    "gatewayd_device_up": (("device", "kind"), "1 while the device is reachable and reporting."),
    "gatewayd_device_last_seen_age_seconds": (("device",), "Seconds since the gateway last heard from the device."),
    "gatewayd_device_battery_volts": (("device",), "Battery voltage the device last reported."),
}  # fmt: skip


def catalogue(families: Mapping[str, Family]) -> dict[str, tuple[tuple[str, ...], str]]:
    """Every metric the gateway exports: its own and every installed family's."""
    out = dict(CATALOGUE)
    for family in families.values():
        out.update(family.metrics)
    return out


class Families:
    """The families of one scrape; ``add`` puts one sample into a catalogue metric."""

    def __init__(self, names: Mapping[str, tuple[tuple[str, ...], str]]) -> None:
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        self._gauge, self._counter = GaugeMetricFamily, CounterMetricFamily
        self._histogram = HistogramMetricFamily
        self.names = names
        self.out: dict[str, Any] = {}

    def add(self, name: str, value: float, *labels: str) -> None:
        fam = self.out.get(name)
        if fam is None:
            names, doc = self.names[name]
            cls = self._counter if name.endswith("_total") else self._gauge
            fam = self.out[name] = cls(name, doc, labels=names)
        fam.add_metric(labels, value)

    def histogram(self, name: str, figures: DeliveryFigures) -> None:
        """A catalogue histogram without labels, from its cumulative counts."""
        from prometheus_client.utils import floatToGoString as untyped

        go_float: Callable[[float], str] = untyped  # the bound's text, as prometheus_client's own
        pairs = zip(figures.bounds, figures.cumulative, strict=True)
        buckets = [(go_float(bound), n) for bound, n in pairs]
        doc = self.names[name][1]
        self.out[name] = self._histogram(name, doc, buckets=buckets, sum_value=figures.sum)


def build(
    snap: Snapshot,
    counters: EventCounters,
    now: float | None = None,
    loop_lag: float | None = None,
) -> list[Metric]:
    """Every family of metrics, from ``snap`` and what ``counters`` counted."""
    now = time.time() if now is None else now
    f = Families(catalogue(counters.families))
    if loop_lag is not None:
        f.add("gatewayd_event_loop_lag_seconds", loop_lag)
    _gateway(f, snap)
    _buses(f, snap, counters.families)
    _alarms(f, snap)
    _devices(f, snap, counters, now)
    return list(f.out.values())


def _gateway(f: Families, snap: Snapshot) -> None:
    f.add("gatewayd_build_info", 1, __version__, snap.gateway_id)
    f.add("gatewayd_start_time_seconds", snap.started)
    f.add("gatewayd_broker_connected", 1 if snap.broker_connected else 0)
    f.add("gatewayd_broker_connects_total", snap.broker_connects)
    f.add("gatewayd_broker_url_index", snap.broker_url_index)
    f.add("gatewayd_fire_mode", 1 if snap.fire_mode else 0)
    box = snap.outbox
    f.add("gatewayd_outbox_depth", box.get("depth", 0))
    f.add("gatewayd_outbox_oldest_age_seconds", snap.outbox_oldest_age)
    dropped = {k.removeprefix("dropped_"): v for k, v in box.items() if k.startswith("dropped_")}
    for lane, n in sorted(dropped.items()):
        f.add("gatewayd_outbox_dropped_total", _num(n) or 0.0, lane)
    f.add("gatewayd_outbox_disk_bytes", box.get("disk_bytes", 0))
    f.add("gatewayd_outbox_damaged_records_total", box.get("damaged_records", 0))
    f.histogram("gatewayd_critical_delivery_seconds", snap.critical_delivery)
    for code in sorted({*CODES, *snap.command_results}):
        f.add("gatewayd_command_results_total", snap.command_results.get(code, 0), code)
    for rule, n in sorted(snap.rule_actions.items()):
        f.add("gatewayd_rule_actions_total", n, rule)


def _buses(f: Families, snap: Snapshot, families: Mapping[str, Family]) -> None:
    for bus in snap.buses:
        f.add("gatewayd_bus_up", 1 if bus.up else 0, bus.name, bus.driver)
        f.add("gatewayd_driver_restarts_total", bus.restarts, bus.name)
        for key, value in bus.stats.items():
            name, num = f"gatewayd_bus_{key}", _num(value)
            if name in CATALOGUE and num is not None:
                f.add(name, num, bus.name)
    for family in families.values():
        family.export_gateway(snap.gateway_state, f.add)


def _alarms(f: Families, snap: Snapshot) -> None:
    by_type: dict[tuple[str, str], int] = {}
    for a in snap.alarms.values():
        labels = (a.device, a.type, a.severity)
        f.add("gatewayd_alarm_active", 1 if a.active else 0, *labels)
        f.add("gatewayd_alarm_awaiting_reset", 1 if a.latched and not a.active else 0, *labels)
        f.add("gatewayd_alarm_acknowledged", 1 if a.acked_by else 0, *labels)
        by_type[a.type, a.severity] = by_type.get((a.type, a.severity), 0) + 1
    for (type_, severity), n in sorted(by_type.items()):
        f.add("gatewayd_alarms_active", n, type_, severity)


def _devices(f: Families, snap: Snapshot, counters: EventCounters, now: float) -> None:
    seen = dict(counters.heard)
    up_buses = {b.name for b in snap.buses if b.up}
    for bus in snap.buses:
        for dev, ts in bus.last_seen.items():
            if (num := _num(ts)) is not None:
                seen[dev] = max(num, seen.get(dev, 0.0))
    for d in snap.devices:
        st: Mapping[str, Any] = snap.states.get(d.id, {})
        ts = max(_num(st.get("last_seen")) or 0.0, seen.get(d.id, 0.0))
        if ts:
            f.add("gatewayd_device_last_seen_age_seconds", round(max(0.0, now - ts), 3), d.id)
        mv = _num(st.get("battery_mv"))
        if mv is not None:
            f.add("gatewayd_device_battery_volts", mv / 1000, d.id)
        family = counters.families.get(d.kind)
        up = family.export(d, st, snap.alarms, counters.tally, f.add) if family else True
        f.add("gatewayd_device_up", 1 if up and d.bus in up_buses else 0, d.id, d.kind)
