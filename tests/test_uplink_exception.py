"""Report by exception (issue 17), end to end: an emulated pile over Modbus TCP → the daemon →
mosquitto → a subscriber. What the platform gets is thinned; what the rules see is not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from tests.harness import Broker, Daemon, Probe, make_site, wait_until

PILE = "pile-3"
FAST, SLOW = 0.2, 1.0
MAX_SILENCE = 4.0
UPLINK = f"[uplink]\ntelemetry_max_seconds = {MAX_SILENCE}\nstate_refresh_seconds = 600\n\n"


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    plan = SitePlan(detectors={}, rtu_piles={}, tcp_piles={PILE: 1}, locks={},
                    fast_seconds=FAST, slow_seconds=SLOW)  # fmt: skip
    site = EmulatedSite(tmp_path, plan).start()
    yield site
    site.stop()


@pytest.fixture
def daemon(tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe) -> Iterator[Daemon]:
    d = Daemon(make_site(tmp_path, broker.url, UPLINK + house.config(tmp_path)))
    d.start()
    probe.wait(f"{d.site.root}/state/{PILE}", lambda s: s.get("online") is True, timeout=15)
    yield d
    if d.alive:
        d.stop()


def load(house: EmulatedSite, port: int, watts: float | None) -> None:
    """A bike on ``port`` drawing exactly ``watts`` (None: unplugged)."""
    pile = house.pile(PILE)

    async def set_load() -> None:
        if watts is None:
            pile.port(port).forced_w = None
            pile.unplug(port)
            return
        if pile.port(port).battery is None:
            pile.plug(port)
        pile.overpower(port, watts)

    house.call(set_load())


def port_entries(probe: Probe, root: str, port: int, key: str) -> list[tuple[float, Any]]:
    """(arrival, value) of every telemetry entry of ``port`` that carries ``key``."""
    out = []
    for m in probe.on(f"{root}/telemetry/{PILE}"):
        for entry in m.json().get("ports", []):
            if entry["port"] == port and key in entry:
                out.append((m.at, entry[key]))
    return out


def states(probe: Probe, root: str, since: float) -> list[dict[str, Any]]:
    return [m.json() for m in probe.on(f"{root}/state/{PILE}") if m.at >= since]


def port_of(state: dict[str, Any], port: int) -> dict[str, Any]:
    return next(p for p in state["ports"] if p["port"] == port)


def test_drift_inside_the_deadband_waits_for_max_silence_and_a_step_goes_within_a_poll(
    daemon: Daemon, house: EmulatedSite, probe: Probe
) -> None:
    root = daemon.site.root
    load(house, 1, 200.0)
    wait_until(lambda: any(v == 200 for _, v in port_entries(probe, root, 1, "power_w")), 5,
               "port 1's first telemetry")  # fmt: skip
    first = next(at for at, v in port_entries(probe, root, 1, "power_w") if v == 200)
    # Drift the way a charge does, always within 10 W of what the platform got.
    drift = [203.0, 198.0, 202.0, 197.0, 201.0]
    end = first + MAX_SILENCE + 2 * SLOW
    i = 0
    while time.monotonic() < end:
        load(house, 1, drift[i % len(drift)])
        i += 1
        time.sleep(0.3)
    sent = [(at - first, v) for at, v in port_entries(probe, root, 1, "power_w") if at > first]
    assert sent, "nothing after max silence"
    # Nothing until the max silence; then the port's values go whole, as they drifted.
    assert sent[0][0] >= MAX_SILENCE - SLOW, sent
    assert sent[0][1] in {int(w) for w in drift}, sent
    assert all(at >= MAX_SILENCE - SLOW for at, _ in sent), sent
    # Every message is one per poll at most: the pile's values and its ports together.
    bodies = [m.json() for m in probe.on(f"{root}/telemetry/{PILE}") if m.at > first]
    assert all(len({p["port"] for p in b.get("ports", [])}) == len(b.get("ports", []))
               for b in bodies)  # fmt: skip
    # A step outside the deadband goes within one poll.
    stepped = time.monotonic()
    load(house, 1, 260.0)
    wait_until(lambda: any(v == 260 for _, v in port_entries(probe, root, 1, "power_w")),
               SLOW + 1.0, "the 260 W step")  # fmt: skip
    arrived = next(at for at, v in port_entries(probe, root, 1, "power_w") if v == 260)
    assert arrived - stepped <= SLOW + 0.5


def test_a_port_starting_or_stopping_updates_the_state_at_once_readings_do_not(
    daemon: Daemon, house: EmulatedSite, probe: Probe
) -> None:
    root = daemon.site.root
    started = time.monotonic()
    load(house, 2, 200.0)
    charging = probe.wait(f"{root}/state/{PILE}",
                          lambda s: port_of(s, 2)["state"] == "charging", timeout=SLOW + 1.0)  # fmt: skip
    assert port_of(charging, 2)["relay"] is True
    assert time.monotonic() - started <= SLOW + 1.0
    # Readings only (power, temperature, the cabinet): the retained state is not republished.
    quiet = time.monotonic() + 0.5
    for watts in (205.0, 195.0, 240.0, 180.0, 230.0):
        load(house, 2, watts)
        time.sleep(0.5)
    assert states(probe, root, quiet) == [], "the state went up for readings only"
    assert {v for _, v in port_entries(probe, root, 2, "power_w")} >= {240, 180, 230}
    stopped = time.monotonic()
    load(house, 2, None)
    idle = probe.wait(f"{root}/state/{PILE}", lambda s: port_of(s, 2)["state"] == "idle",
                      timeout=SLOW + 1.0)  # fmt: skip
    assert port_of(idle, 2)["power_w"] == 0
    assert time.monotonic() - stopped <= SLOW + 1.0
    # The stop's last reading goes as telemetry too: the latest telemetry says 0 W.
    wait_until(lambda: port_entries(probe, root, 2, "power_w")[-1][1] == 0, 2, "0 W telemetry")


def test_the_rules_see_every_reading_the_uplink_holds_back(
    daemon: Daemon, house: EmulatedSite, probe: Probe
) -> None:
    """The overheat path is the rules', untouched: a socket creeping over 60 °C by less than
    the uplink's 0.5 °C deadband is still cut within a poll, and that reading goes at once."""
    root = daemon.site.root
    pile = house.pile(PILE)
    load(house, 2, 200.0)

    async def heat(celsius: float) -> None:
        pile.heat_port(2, celsius)

    house.call(heat(59.8))
    wait_until(lambda: any(v == 59.8 for _, v in port_entries(probe, root, 2, "temperature_c")),
               SLOW + 1.0, "59.8 °C sent")  # fmt: skip
    crossed = time.monotonic()
    house.call(heat(60.1))  # 0.3 °C: inside the deadband, over the rule's 60 °C
    wait_until(lambda: not pile.port(2).relay, SLOW + 1.0, "port 2 cut")
    assert time.monotonic() - crossed <= SLOW + 1.0
    assert [p.relay for p in pile.ports] == [True, False, True, True]
    event = probe.wait(f"{root}/events/{PILE}", lambda e: e["type"] == "charger.port_cut",
                       timeout=5)  # fmt: skip
    assert event["severity"] in ("warning", "critical") and event["data"]["ports"] == [2]
    # The reading that crossed went up at once, deadband aside (the alarm made it eager).
    def hot() -> list[tuple[float, Any]]:
        return [(at, v) for at, v in port_entries(probe, root, 2, "temperature_c") if v >= 60.0]

    # Telemetry and events are separate messages: the reading may land just after the event.
    [(sent_at, _), *_] = wait_until(hot, SLOW + 1.0, "the reading over 60 °C sent")
    assert sent_at - crossed <= SLOW + 1.0, hot()
