"""Idle piles (issue 17): the real daemon polls a pile at rest at the idle period, and goes back
to the fast period as soon as a port starts charging (docs/chargers.md, "Idle piles")."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from tests.harness import Broker, Daemon, Probe, make_site

FAST, SLOW, IDLE = 0.2, 2.0, 1.0
SUMMARY_READ = b"\x04\x01\x00"  # FC 04 from register 256: the six-register summary block


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    plan = SitePlan(
        locks={}, detectors={}, fast_seconds=FAST, slow_seconds=SLOW, idle_seconds=IDLE
    )
    site = EmulatedSite(tmp_path, plan).start()
    yield site
    site.stop()


def summary_reads(house: EmulatedSite, since: float, until: float) -> list[float]:
    """When the TCP pile (pile-3, unit 1) was asked for its summary, by the emulator's trace."""

    async def trace() -> list[tuple[float, int, bytes]]:
        return list(house.tcp.trace)  # copied on the emulator's own loop

    return [t for t, unit, pdu in house.call(trace())
            if unit == 1 and pdu.startswith(SUMMARY_READ) and since <= t <= until]  # fmt: skip


def test_an_idle_pile_is_polled_at_the_idle_period_and_fast_once_a_port_charges(
    tmp_path: Path, broker: Broker, house: EmulatedSite
) -> None:
    site = make_site(tmp_path, broker.url, house.config(tmp_path))
    probe = Probe(broker.port, f"{site.root}/#")  # subscribed before the daemon starts
    daemon = Daemon(site)
    daemon.start()
    try:
        probe.wait(f"{site.root}/state/pile-3", lambda s: s.get("online") is True, timeout=15)
        time.sleep(2 * IDLE)  # past the first full read and its summary
        start = time.monotonic()
        time.sleep(4 * IDLE + 0.1)
        resting = summary_reads(house, start, time.monotonic())

        async def plug() -> None:
            house.pile("pile-3").plug(2)

        plugged = time.time()
        house.call(plug())
        started = probe.wait(
            f"{site.root}/events/pile-3", lambda e: e["type"] == "charger.port_started", 5
        )
        seen = time.time() - plugged
        busy_from = time.monotonic()
        time.sleep(10 * FAST + 0.05)
        busy = summary_reads(house, busy_from, time.monotonic())
    finally:
        daemon.stop()
        probe.close()
    # At rest: one summary read per idle period (4 in 4 periods), none at the fast period.
    assert len(resting) in (4, 5), resting
    gaps = [b - a for a, b in itertools.pairwise(resting)]
    assert all(IDLE - 0.1 < g < IDLE + 0.1 for g in gaps), gaps
    # A port that starts charging is seen within the idle period and a fast one (the event's
    # trip through mosquitto included), and the pile is read at the fast period after.
    assert (started["device"], started["data"]) == ("pile-3", {"port": 2})
    assert seen < IDLE + FAST + 0.3, seen
    assert len(busy) >= 9, busy
    assert max(b - a for a, b in itertools.pairwise(busy)) < FAST + 0.1
