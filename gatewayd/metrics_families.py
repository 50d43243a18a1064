"""The metric families of one scrape, built from a Gateway's in-memory state. Pure reads.

``CATALOGUE`` is every metric the gateway exports: name, labels, HELP. ``build`` reads the
daemon's state (config, device states, alarms, counters) and never touches a device or does
I/O; it runs on the event loop, so what it reads is one consistent moment. ``EventCounters``
is the event listener that keeps the few counts state does not (cuts, unlocks, forced doors).
Labels stay bounded: never a user id, never free text from the wire.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.commands import CODES
from gatewayd.model import Event, alarm_id

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.metrics")

SMOKE_ALARMS = ("smoke.alarm", "smoke.heat_alarm")
ACTIVE = ("charging", "full")  # port states with a session (and a closed relay)


def _num(value: Any) -> float | None:
    """A finite number from a state field, else None (missing, a broken sensor, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # NaN is "no reading"


def _cut_reason(origin: str) -> str:
    """A bounded label for why a charger port was cut: the rule, or "command"."""
    if origin.startswith("command"):
        return "command"  # the user after the colon must never become a label
    return origin.removeprefix("charger_") or "unknown"


class EventCounters:
    """Counts what events say and state does not keep; an event listener, run on the loop."""

    def __init__(self) -> None:
        self.cuts: dict[str, dict[str, int]] = {}  # device -> reason -> cuts
        self.unlocks: dict[str, dict[str, int]] = {}  # device -> method -> unlocks
        self.denied: dict[str, int] = {}
        self.forced: dict[str, int] = {}
        self.energy: dict[tuple[str, str], float] = {}  # (device, port) -> Wh delivered
        self._session_wh: dict[tuple[str, str], float] = {}  # the pile's session register
        self.heard: dict[str, float] = {}  # device -> time of its latest own event

    def __call__(self, event: Event) -> None:
        data, dev = event.data, event.device
        if event.kind != "gateway" and event.type != "smoke.missing":
            self.heard[dev] = max(event.ts, self.heard.get(dev, 0.0))
        match event.type:
            case "charger.port_cut":
                _bump(self.cuts, dev, _cut_reason(str(data.get("origin", ""))))
            case "charger.sample" if data.get("source") == "ports":
                for port in data.get("ports", ()):
                    self._energy(dev, port)
            case "door.unlocked":
                method = str(data.get("method", "unknown"))
                _bump(self.unlocks, dev, "unknown" if method.startswith("unknown") else method)
            case "door.access_denied":
                self.denied[dev] = self.denied.get(dev, 0) + 1
            case "door.forced":
                self.forced[dev] = self.forced.get(dev, 0) + 1

    def _energy(self, dev: str, port: Mapping[str, Any]) -> None:
        """Turn the pile's per-session energy register into a counter that only grows."""
        wh, key = _num(port.get("energy_wh")), (dev, str(port.get("port")))
        if wh is None:
            return
        prev, self._session_wh[key] = self._session_wh.get(key), wh
        if key not in self.energy:
            if port.get("state") not in ACTIVE:
                return  # the series starts when the port first charges: keeps scrapes small
            self.energy[key] = 0.0
            if prev is None:
                return  # delivered before this daemon watched: not ours to count
        # A reading below the previous one is a new session counting from zero.
        self.energy[key] += wh - prev if prev is not None and wh >= prev else wh


def _bump(table: dict[str, dict[str, int]], device: str, label: str) -> None:
    per = table.setdefault(device, {})
    per[label] = per.get(label, 0) + 1


#: Every metric: name -> (labels, HELP). One table, so names, labels and help text are
#: reviewed together (docs/monitoring.md lists the same). ``_total`` names are counters.
CATALOGUE: Mapping[str, tuple[tuple[str, ...], str]] = {
    # the gateway
    "gatewayd_build_info": (("version", "gateway_id"), "Always 1; the labels say which gatewayd this is."),
    "gatewayd_start_time_seconds": ((), "When the daemon started (Unix time)."),
    "gatewayd_broker_connected": ((), "1 while the MQTT link to the platform's broker is up."),
    "gatewayd_broker_connects_total": ((), "Successful connections to the broker; growth means reconnects."),
    "gatewayd_event_loop_lag_seconds": ((), "How long this scrape waited for the daemon's event loop; high means the daemon is overloaded."),
    "gatewayd_fire_mode": ((), "1 while the house is in fire mode (ends only with fire_reset)."),
    "gatewayd_outbox_depth": ((), "Messages waiting for the broker's acknowledgement."),
    "gatewayd_outbox_oldest_age_seconds": ((), "Age of the oldest message not yet acknowledged by the broker."),
    "gatewayd_outbox_dropped_total": (("lane",), "Messages given up for lack of room (lane urgent, info or telemetry); urgent drops are lost safety events."),
    "gatewayd_outbox_disk_bytes": ((), "Bytes the outbox holds on the SD card while the broker is away."),
    "gatewayd_command_results_total": (("code",), "Platform commands answered, by result code."),
    "gatewayd_rule_actions_total": (("rule",), "Actions (cuts, releases) started by a local rule."),
    "gatewayd_alarm_active": (("device", "type", "severity"), "1 per alarm now active on this gateway."),
    "gatewayd_alarm_acknowledged": (("device", "type", "severity"), "1 once someone acknowledged the active alarm."),
    "gatewayd_alarms_active": (("type", "severity"), "Active alarms, counted by type and severity."),
    # buses and receivers
    "gatewayd_bus_up": (("bus", "driver"), "1 while the bus's driver is running."),
    "gatewayd_driver_restarts_total": (("bus",), "Times the bus's driver failed and was restarted."),
    "gatewayd_bus_requests_total": (("bus",), "Requests the driver sent on this bus."),
    "gatewayd_bus_errors_total": (("bus",), "Requests answered with an error or a garbled reply."),
    "gatewayd_bus_timeouts_total": (("bus",), "Requests that got no reply in time."),
    "gatewayd_bus_utilisation_ratio": (("bus",), "Share of time the bus was busy, 0 to 1."),
    "gatewayd_bus_watched_piles": (("bus",), "Charging piles under the charger watch (a port at or above watch_celsius): their powered ports are read every round, at a cost in line time."),
    "gatewayd_receiver_up": (("bus",), "1 while the smoke receiver answers the gateway."),
    "gatewayd_receiver_bad_frames_total": (("bus", "reason"), "Damaged radio frames dropped (crc, len); fast growth means a bad cable or adapter."),
    # every device
    "gatewayd_device_up": (("device", "kind"), "1 while the device is reachable and reporting."),
    "gatewayd_device_last_seen_age_seconds": (("device",), "Seconds since the gateway last heard from the device."),
    "gatewayd_device_battery_volts": (("device",), "Battery voltage the device last reported."),
    # smoke detectors
    "gatewayd_smoke_alarm_active": (("device", "room"), "1 while the detector reports smoke or heat."),
    "gatewayd_smoke_missing": (("device",), "1 while the detector has been silent too long (battery out, removed, out of range)."),
    "gatewayd_smoke_rssi_dbm": (("device",), "Radio signal of the detector's last heartbeat, dBm."),
    # charging piles
    "gatewayd_charger_port_power_watts": (("device", "port"), "Power the port delivers now; absent while idle at 0 W."),
    "gatewayd_charger_port_temperature_celsius": (("device", "port"), "Temperature at the port's socket."),
    "gatewayd_charger_port_state": (("device", "port", "state"), "1 for the port's current state (idle, charging, full, fault, disabled); other states are absent."),
    "gatewayd_charger_port_energy_joules_total": (("device", "port"), "Energy delivered through the port since the daemon started (3600 J = 1 Wh); appears when the port first charges."),
    "gatewayd_charger_cabinet_temperature_celsius": (("device",), "Temperature inside the pile's cabinet."),
    "gatewayd_charger_cuts_total": (("device", "reason"), "Ports the gateway switched off, by reason (the rule, or command)."),
    # door locks
    "gatewayd_door_locked": (("device",), "1 while the lock reports itself locked."),
    "gatewayd_door_held_open": (("device",), "1 while the lock is held open (evacuation release)."),
    "gatewayd_door_open": (("device",), "1 while the door leaf is open."),
    "gatewayd_door_unlocks_total": (("device", "method"), "Unlocks, by method (card, pin, remote...)."),
    "gatewayd_door_denied_total": (("device",), "Refused unlock attempts (unknown card, wrong PIN...)."),
    "gatewayd_door_forced_total": (("device",), "Times the door was opened without an unlock."),
}  # fmt: skip


class Families:
    """The families of one scrape; ``add`` puts one sample into a catalogue metric."""

    def __init__(self) -> None:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        self._gauge, self._counter = GaugeMetricFamily, CounterMetricFamily
        self.out: dict[str, Any] = {}

    def add(self, name: str, value: float, *labels: str) -> None:
        fam = self.out.get(name)
        if fam is None:
            names, doc = CATALOGUE[name]
            cls = self._counter if name.endswith("_total") else self._gauge
            fam = self.out[name] = cls(name, doc, labels=names)
        fam.add_metric(labels, value)


def build(
    gw: Gateway, counters: EventCounters, now: float | None = None, loop_lag: float | None = None
) -> list[Metric]:
    """Every family, from ``gw``'s in-memory state. Call it on the event loop."""
    now = time.time() if now is None else now
    f = Families()
    if loop_lag is not None:
        f.add("gatewayd_event_loop_lag_seconds", loop_lag)
    _gateway(f, gw, now)
    _buses(f, gw)
    _alarms(f, gw)
    _devices(f, gw, counters, now)
    return list(f.out.values())


def _gateway(f: Families, gw: Gateway, now: float) -> None:
    f.add("gatewayd_build_info", 1, __version__, gw.config.gateway_id)
    f.add("gatewayd_start_time_seconds", gw.started)
    link = gw.link
    f.add("gatewayd_broker_connected", 1 if link is not None and link.connected else 0)
    f.add("gatewayd_broker_connects_total", link.connects if link is not None else 0)
    f.add("gatewayd_fire_mode", 1 if gw.alarms.fire_mode else 0)
    _outbox(f, gw, now)
    for code in sorted({*CODES, *gw.results}):
        f.add("gatewayd_command_results_total", gw.results.get(code, 0), code)
    actions = gw.engine.actions_by_rule
    for rule in sorted({*(r.name for r in gw.engine.rules), *actions}):
        f.add("gatewayd_rule_actions_total", actions.get(rule, 0), rule)


def _outbox(f: Families, gw: Gateway, now: float) -> None:
    box = gw.outbox
    f.add("gatewayd_outbox_depth", box.depth)
    f.add("gatewayd_outbox_oldest_age_seconds", box.oldest_age(now))
    figures = box.stats()
    dropped = {
        k.removeprefix("dropped_"): v for k, v in figures.items() if k.startswith("dropped_")
    }
    for lane, n in sorted(dropped.items()):
        f.add("gatewayd_outbox_dropped_total", _num(n) or 0.0, lane)
    f.add("gatewayd_outbox_disk_bytes", figures["disk_bytes"])


def _ask(driver: Any, face: str) -> Mapping[str, Any]:
    """A driver's optional ``stats()`` or ``last_seen()``; a plugin's that fails costs its
    own figures (logged at debug), never the whole scrape."""
    method = getattr(driver, face, None)
    if not callable(method):
        return {}
    try:
        answer = method()
    except Exception as exc:  # noqa: BLE001 -- third-party code, called at every scrape
        log.debug("metrics: %s.%s() failed: %s", type(driver).__name__, face, exc)
        return {}
    return answer if isinstance(answer, Mapping) else {}


def _buses(f: Families, gw: Gateway) -> None:
    for cfg in gw.config.buses:
        sup = gw.buses.get(cfg.name)
        driver = sup.driver if sup is not None else None
        f.add("gatewayd_bus_up", 0 if driver is None else 1, cfg.name, cfg.driver)
        f.add("gatewayd_driver_restarts_total", sup.restarts if sup is not None else 0, cfg.name)
        for key, value in _ask(driver, "stats").items():
            name, num = f"gatewayd_bus_{key}", _num(value)
            if name in CATALOGUE and num is not None:
                f.add(name, num, cfg.name)
    own = gw.world.states.get(gw.config.gateway_id, {})
    for key, rx in sorted(own.items()):
        if key.startswith("receiver.") and isinstance(rx, Mapping):
            bus = key.removeprefix("receiver.")
            f.add("gatewayd_receiver_up", 1 if rx.get("online") else 0, bus)
            for what in ("crc", "len"):
                bad = _num(rx.get(f"bad_{what}")) or 0.0
                f.add("gatewayd_receiver_bad_frames_total", bad, bus, what)


def _alarms(f: Families, gw: Gateway) -> None:
    by_type: dict[tuple[str, str], int] = {}
    for a in list(gw.alarms.alarms.values()):
        f.add("gatewayd_alarm_active", 1, a.device, a.type, a.severity)
        f.add("gatewayd_alarm_acknowledged", 1 if a.acked_by else 0, a.device, a.type, a.severity)
        by_type[a.type, a.severity] = by_type.get((a.type, a.severity), 0) + 1
    for (type_, severity), n in sorted(by_type.items()):
        f.add("gatewayd_alarms_active", n, type_, severity)


def _devices(f: Families, gw: Gateway, counters: EventCounters, now: float) -> None:
    states, alarms = gw.world.states, gw.alarms.alarms
    seen = dict(counters.heard)
    for sup in list(gw.buses.values()):
        for dev, ts in _ask(sup.driver, "last_seen").items():
            if (num := _num(ts)) is not None:
                seen[dev] = max(num, seen.get(dev, 0.0))
    bus_up = {name: sup.driver is not None for name, sup in gw.buses.items()}
    for d in gw.config.devices:
        st: Mapping[str, Any] = states.get(d.id, {})
        ts = max(_num(st.get("last_seen")) or 0.0, seen.get(d.id, 0.0))
        if ts:
            f.add("gatewayd_device_last_seen_age_seconds", round(max(0.0, now - ts), 3), d.id)
        mv = _num(st.get("battery_mv"))
        if mv is not None:
            f.add("gatewayd_device_battery_volts", mv / 1000, d.id)
        if d.kind == "smoke":
            up = _smoke(f, d.id, str(d.settings.get("room") or ""), st, alarms)
        elif d.kind == "charger":
            up = _charger(f, d.id, st, counters)
        elif d.kind == "door_lock":
            up = _door(f, d.id, st, counters)
        else:
            up = True
        f.add("gatewayd_device_up", 1 if up and bus_up.get(d.bus) else 0, d.id, d.kind)


def _smoke(
    f: Families, dev: str, room: str, st: Mapping[str, Any], alarms: Mapping[str, Any]
) -> bool:
    fire = st.get("alarm") in ("smoke", "heat") or any(
        alarm_id(dev, t) in alarms for t in SMOKE_ALARMS
    )
    missing = alarm_id(dev, "smoke.missing") in alarms
    f.add("gatewayd_smoke_alarm_active", 1 if fire else 0, dev, room)
    f.add("gatewayd_smoke_missing", 1 if missing else 0, dev)
    rssi = _num(st.get("rssi_dbm"))
    if rssi is not None:
        f.add("gatewayd_smoke_rssi_dbm", rssi, dev)
    return not missing


def _charger(f: Families, dev: str, st: Mapping[str, Any], counters: EventCounters) -> bool:
    for p in st.get("ports") or ():
        if not isinstance(p, Mapping):
            continue
        port = str(p.get("port"))
        state = str(p.get("state", "unknown"))
        watts, temp = _num(p.get("power_w")), _num(p.get("temperature_c"))
        if watts is not None and (watts or state != "idle"):  # idle and 0 W: absent, not 0
            f.add("gatewayd_charger_port_power_watts", watts, dev, port)
        if temp is not None:
            f.add("gatewayd_charger_port_temperature_celsius", temp, dev, port)
        f.add("gatewayd_charger_port_state", 1, dev, port, state)
        wh = counters.energy.get((dev, port))
        if wh is not None:
            f.add("gatewayd_charger_port_energy_joules_total", wh * 3600, dev, port)
    cabinet = _num(st.get("cabinet_c", st.get("cabinet_temperature_c")))
    if cabinet is not None:
        f.add("gatewayd_charger_cabinet_temperature_celsius", cabinet, dev)
    for reason, n in sorted(counters.cuts.get(dev, {}).items()):
        f.add("gatewayd_charger_cuts_total", n, dev, reason)
    return bool(st.get("online"))


def _door(f: Families, dev: str, st: Mapping[str, Any], counters: EventCounters) -> bool:
    if "lock" in st:
        f.add("gatewayd_door_locked", 1 if st["lock"] == "locked" else 0, dev)
        f.add("gatewayd_door_held_open", 1 if st["lock"] == "held_open" else 0, dev)
    if "door" in st:
        f.add("gatewayd_door_open", 1 if st["door"] == "open" else 0, dev)
    for method, n in sorted(counters.unlocks.get(dev, {}).items()):
        f.add("gatewayd_door_unlocks_total", n, dev, method)
    f.add("gatewayd_door_denied_total", counters.denied.get(dev, 0), dev)
    f.add("gatewayd_door_forced_total", counters.forced.get(dev, 0), dev)
    return bool(st.get("connected"))
