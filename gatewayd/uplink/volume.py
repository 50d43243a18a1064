"""The site's uplink volume, estimated: what `gatewayd check` says the 4G card will carry a month.

Each device family says what one of its devices sends on a typical day (``Family.traffic``: a
``Traffic`` of messages a day and their sizes, measured by ``bench/bench_uplink.py`` on the
bench house, docs/benchmarks.md), from the device's own settings (a detector's heartbeat, a
pile's poll periods). This module applies the site's ``[uplink]`` settings to it the way
``gatewayd.uplink.exception`` thins the uplink:

- events go as they happen (``events``);
- the retained state goes on every discrete change (``changes``) and, while its readings move
  (``readings`` times a day), at most every ``state_refresh_seconds``;
- telemetry goes when a reading moves past its deadband (``telemetry`` messages a day at the
  family's deadbands), and at least every ``telemetry_max_seconds`` while readings come;
- with ``report = "every_reading"``, every reading is a state and ``parts`` telemetry messages.

Bytes are MQTT bytes (PUBLISH with topic and header, and the PUBACK of QoS 1), without TCP/TLS.
It is an estimate for the usage the bench assumes (what each family's ``traffic`` says), not a
bill: it never reads anything but the config.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatewayd.config import Config, UplinkConfig
    from gatewayd.family import Family

DAY = 86400.0
MONTH_DAYS = 30


@dataclass(frozen=True)
class Traffic:
    """One device's typical day on the uplink (see the module docstring)."""

    events: float = 0.0  # events a day
    event_bytes: float = 0.0
    changes: float = 0.0  # discrete state changes a day
    state_bytes: float = 0.0
    readings: float = 0.0  # times a day its readings change (a poll, a heartbeat)
    telemetry: float = 0.0  # telemetry messages a day its deadbands let through
    telemetry_bytes: float = 0.0
    parts: float = 1.0  # telemetry messages per reading, every_reading (a pile's live ports)
    part_bytes: float = 0.0  # one of those (the old format): telemetry_bytes when 0

    def day(self, uplink: UplinkConfig) -> tuple[float, float]:
        """(messages, bytes) a day under ``uplink``."""
        if uplink.every_reading:
            states = self.changes + self.readings
            telemetry = self.readings * self.parts if self.telemetry_bytes else 0.0
            tele_bytes = self.part_bytes or self.telemetry_bytes
        else:
            states = self.changes + min(self.readings, DAY / uplink.state_refresh_seconds)
            floor = min(self.readings, DAY / uplink.telemetry_max_seconds)
            telemetry = max(self.telemetry, floor) if self.telemetry_bytes else 0.0
            tele_bytes = self.telemetry_bytes
        messages = self.events + states + telemetry
        size = self.events * self.event_bytes + states * self.state_bytes + telemetry * tele_bytes
        return messages, size


@dataclass
class Estimate:
    messages_day: float = 0.0
    bytes_day: float = 0.0
    counted: Counter[str] = field(default_factory=Counter)  # kind -> devices estimated
    unknown: list[str] = field(default_factory=list)  # devices whose family says nothing

    @property
    def mb_month(self) -> float:
        return self.bytes_day * MONTH_DAYS / 1e6


def estimate(config: Config, families: Mapping[str, Family]) -> Estimate:
    """The site's uplink a day, from its devices, their buses' settings and ``[uplink]``."""
    out = Estimate()
    buses = {b.name: b.settings for b in config.buses}
    for device in config.devices:
        family = families.get(device.kind)
        traffic = family.traffic(device, buses.get(device.bus, {})) if family else None
        if traffic is None:
            out.unknown.append(device.id)
            continue
        messages, size = traffic.day(config.uplink)
        out.messages_day += messages
        out.bytes_day += size
        out.counted[device.kind] += 1
    return out
