"""A read-only picture of the gateway for one scrape: what metrics may read, and nothing else.

Taken on the event loop in one go (``take_snapshot``, behind ``Gateway.snapshot``), so a scrape sees one consistent
moment; the families of metrics are built from it alone, never from the daemon object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.driver import DeviceConfig
from gatewayd.model import Alarm
from gatewayd.uplink.delivery import DeliveryFigures

if TYPE_CHECKING:
    from gatewayd.runtime import Gateway

log = logging.getLogger("gatewayd.metrics")


@dataclass(frozen=True)
class BusFigures:
    name: str
    driver: str
    up: bool
    restarts: int
    stats: Mapping[str, Any] = field(default_factory=dict)  # the driver's stats()
    last_seen: Mapping[str, Any] = field(default_factory=dict)  # device -> Unix time


@dataclass(frozen=True)
class Snapshot:
    gateway_id: str
    version: str
    started: float
    broker_connected: bool
    broker_connects: int
    broker_url_index: int  # which of [mqtt] url the link is on (or trying): 0 is the first
    fire_mode: bool
    outbox: Mapping[str, float]  # Outbox.stats()
    outbox_oldest_age: float
    critical_delivery: DeliveryFigures  # critical events: frame -> the broker's PUBACK
    command_results: Mapping[str, int]  # code -> count
    rule_actions: Mapping[str, int]  # rule -> actions started (every active rule listed)
    buses: tuple[BusFigures, ...]
    devices: tuple[DeviceConfig, ...]
    states: Mapping[str, Mapping[str, Any]]  # device -> retained state
    alarms: Mapping[str, Alarm]
    gateway_state: Mapping[str, Any]  # what drivers keep about the gateway (receivers)


def take_snapshot(gw: Gateway) -> Snapshot:
    """The picture of ``gw`` now; called on its event loop."""
    buses = []
    for cfg in gw.config.buses:
        sup = gw.buses.get(cfg.name)
        driver = sup.driver if sup is not None else None
        buses.append(
            BusFigures(
                cfg.name,
                cfg.driver,
                driver is not None,
                sup.restarts if sup else 0,
                _ask(driver, "stats"),
                _ask(driver, "last_seen"),
            )
        )
    actions = gw.engine.actions_by_rule
    return Snapshot(
        gateway_id=gw.config.gateway_id,
        version=__version__,
        started=gw.started,
        broker_connected=bool(gw.link is not None and gw.link.connected),
        broker_connects=gw.link.connects if gw.link is not None else 0,
        broker_url_index=gw.link.broker_index if gw.link is not None else 0,
        fire_mode=gw.alarms.fire_mode,
        outbox=gw.outbox.stats(),
        outbox_oldest_age=gw.outbox.oldest_age(),
        critical_delivery=gw.publisher.delivery.figures(),
        command_results=dict(gw.commands.results),
        rule_actions={r: actions.get(r, 0) for r in {*(x.name for x in gw.engine.rules), *actions}},
        buses=tuple(buses),
        devices=gw.config.devices,
        states={d: dict(s) for d, s in gw.world.states.items()},
        alarms=dict(gw.alarms.alarms),
        gateway_state=dict(gw.world.states.get(gw.config.gateway_id, {})),
    )


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
    return dict(answer) if isinstance(answer, Mapping) else {}
