"""A read-only picture of the gateway for one scrape: what metrics may read, and nothing else.

Taken on the event loop in one go (``Gateway.snapshot``), so a scrape sees one consistent
moment; the families of metrics are built from it alone, never from the daemon object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewayd.driver import DeviceConfig
from gatewayd.model import Alarm


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
    fire_mode: bool
    outbox: Mapping[str, float]  # Outbox.stats()
    outbox_oldest_age: float
    command_results: Mapping[str, int]  # code -> count
    rule_actions: Mapping[str, int]  # rule -> actions started (every active rule listed)
    buses: tuple[BusFigures, ...]
    devices: tuple[DeviceConfig, ...]
    states: Mapping[str, Mapping[str, Any]]  # device -> retained state
    alarms: Mapping[str, Alarm]
    gateway_state: Mapping[str, Any]  # what drivers keep about the gateway (receivers)
