"""The EFM-4 family through the real daemon, on the piles' RS-485 pty line, with the smoke
receiver and a real broker: a confirmed fire trips the detectors on non-fire power and only
those (GB 50116 §4.10), the piles are cut as ever, and no command re-closes a breaker.

One smoke alarm is the fire's first stage (chargers cut, no breaker tripped); a second
detector confirms it (``confirm_fire``), and only then are the breakers tripped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from gatewayd_efm_stubs.efm4 import Efm4
from tests.harness import Broker, Daemon, Probe, Site, make_site, wait_until

DETECTORS = {"efm-9": (9, True), "efm-10": (10, False)}  # id -> (unit, non_fire_power)


@pytest.fixture
def house(tmp_path: Path) -> Iterator[tuple[EmulatedSite, dict[str, Efm4]]]:
    site = EmulatedSite(tmp_path, SitePlan(locks={}, tcp_piles={}))
    efms = {dev: Efm4(unit=unit) for dev, (unit, _) in DETECTORS.items()}
    for efm in efms.values():
        site.rtu.piles[efm.unit] = efm  # type: ignore[assignment]  # any slave rides the line
    site.start()
    yield site, efms
    site.stop()


@pytest.fixture
def site(tmp_path: Path, broker: Broker, house: tuple[EmulatedSite, dict[str, Efm4]]) -> Site:
    body = house[0].config(tmp_path)
    for dev, (unit, non_fire) in DETECTORS.items():
        body += (
            f'\n[[devices]]\nid = "{dev}"\nkind = "electrical"\nbus = "rs485"\nunit = {unit}\n'
            f'room = "配电箱"\nnon_fire_power = {"true" if non_fire else "false"}\n'
        )
    return make_site(tmp_path, broker.url, body)


def confirm_fire(house: EmulatedSite) -> None:
    """A confirmed fire: a second detector's alarm confirms the first one's (issue 14)."""
    house.call(house.detector("smoke-302").alarm(150))


def send(probe: Probe, site: Site, device: str, action: str) -> dict:
    cmd = site.command(device, action)
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    return probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=15)


def test_a_confirmed_fire_trips_the_non_fire_power_circuits_only(
    site: Site, house: tuple[EmulatedSite, dict[str, Efm4]], probe: Probe
) -> None:
    emulated, efms = house
    daemon = Daemon(site)
    daemon.start()
    try:
        root = site.root
        for dev in ("pile-1", "pile-2", *DETECTORS):
            probe.wait(f"{root}/state/{dev}", lambda s: s.get("online") is True, timeout=15)
        state = probe.wait(f"{root}/state/efm-9", lambda s: len(s.get("channels") or ()) == 4)
        assert state["tripped"] is False and state["leakage_ma"] == 12
        # Nobody re-closes a breaker from afar: refused with the reason, nothing written.
        close = send(probe, site, "efm-9", "close")
        assert (close["code"], close["detail"]) == (
            "forbidden",
            "a tripped breaker is switched on by hand at the box; nothing re-closes it remotely",
        )
        # One detector's alarm: every charger cut, but no breaker tripped before the fire
        # is confirmed (a single detector may be steam, or a replayed radio code).
        emulated.call(emulated.detector("smoke-301").alarm(150))
        wait_until(
            lambda: not any(p.relay for _, pile in emulated.piles() for p in pile.ports),
            10, "every charger cut",
        )  # fmt: skip
        probe.wait(f"{root}/status", lambda s: s.get("fire_mode") is True)
        assert efms["efm-9"].coil_writes == [] and not efms["efm-9"].trip_output
        confirm_fire(emulated)
        wait_until(lambda: efms["efm-9"].trip_output, 10, "efm-9 tripped")
        tripped = probe.wait(f"{root}/events/efm-9", lambda e: e["type"] == "electrical.tripped")
        assert (tripped["severity"], tripped["data"]["by"]) == ("critical", "gateway")
        assert tripped["data"]["reason"].startswith("fire")
        probe.wait(f"{root}/state/efm-9", lambda s: s.get("tripped") is True)
        wait_until(
            lambda: not any(p.relay for _, pile in emulated.piles() for p in pile.ports),
            10, "every charger cut",
        )  # fmt: skip
        probe.wait(f"{root}/status", lambda s: s.get("fire_mode") is True)
        # The detector on fire-fighting power is left alone.
        assert efms["efm-10"].coil_writes == [] and not efms["efm-10"].trip_output
        assert not [
            m for m in probe.on(f"{root}/events/efm-10") if m.json()["type"] == "electrical.tripped"
        ]
        assert efms["efm-9"].coil_writes == [True]  # and never a 0
    finally:
        daemon.stop()
