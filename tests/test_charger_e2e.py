"""Charging piles end to end: emulated piles (RTU pty line and TCP) → the daemon → mosquitto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from tests.harness import Broker, Daemon, Probe, Site, make_site, wait_until


@pytest.fixture
def piles(tmp_path: Path) -> Iterator[EmulatedSite]:
    site = EmulatedSite(tmp_path, SitePlan(locks={})).start()

    async def plug() -> None:
        for _dev, pile in site.piles():
            pile.plug(1)
            pile.plug(2)

    site.call(plug())
    yield site
    site.stop()


@pytest.fixture
def pile_daemon(tmp_path: Path, broker: Broker, piles: EmulatedSite) -> Iterator[Daemon]:
    d = Daemon(make_site(tmp_path, broker.url, piles.config(tmp_path)))
    d.start()
    yield d
    if d.alive:
        d.stop()


def said_of_itself(probe: Probe, site: Site, device: str) -> dict:
    """The device's entry in the retained devices list, once it carries what the pile said."""
    body = probe.wait(
        f"{site.root}/devices",
        lambda b: any(d["id"] == device and "port_count" in d for d in b["devices"]),
        timeout=15,
    )
    return next(d for d in body["devices"] if d["id"] == device)


def test_a_piles_firmware_and_port_count_go_in_the_devices_list_not_in_every_state(
    pile_daemon: Daemon, piles: EmulatedSite, probe: Probe
) -> None:
    """Compact payloads (issue 17): constants of a device are said once, in its devices entry."""
    site = pile_daemon.site
    entry = said_of_itself(probe, site, "pile-3")
    assert (entry["model"], entry["firmware"], entry["port_count"]) == ("ebc", "1.3", 4)
    state = probe.wait(f"{site.root}/state/pile-3", lambda s: s.get("online") is True)
    assert not {"profile", "firmware", "port_count"} & set(state), state
    assert len(state["ports"]) == 4 and state["unit"] == 1


def send(probe: Probe, site: Site, device: str, action: str, args: dict | None = None) -> dict:
    cmd = site.command(device, action, args)
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    return probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=15)


@pytest.mark.parametrize("device", ["pile-2", "pile-3"])  # on the RTU line, and over TCP
def test_overheat_cuts_that_port_only_and_port_on_is_refused(
    device: str, pile_daemon: Daemon, piles: EmulatedSite, probe: Probe
) -> None:
    site = pile_daemon.site
    probe.wait(f"{site.root}/state/{device}", lambda s: s.get("online") is True, timeout=15)
    pile = piles.pile(device)

    async def heat() -> None:
        pile.heat_port(2, 66.0)

    piles.call(heat())
    wait_until(lambda: not pile.ports[1].relay, 5, "port 2's relay to open")
    assert [p.relay for p in pile.ports] == [True, False, True, True]  # only that port
    others = [p for dev, p in piles.piles() if dev != device]
    assert all(all(port.relay for port in p.ports) for p in others)
    cut = probe.wait(f"{site.root}/events/{device}", lambda e: e["type"] == "charger.port_cut")
    assert cut["data"]["ports"] == [2]
    alarms = probe.wait(
        f"{site.root}/alarms", lambda b: any(a["type"] == "charger.overheat" for a in b["active"])
    )
    assert [a["device"] for a in alarms["active"] if a["type"] == "charger.overheat"] == [device]
    refused = send(probe, site, device, "port_on", {"port": 2})
    assert refused["code"] == "forbidden"
    assert not pile.ports[1].relay
    assert send(probe, site, device, "port_off", {"port": 4})["code"] == "ok"
    wait_until(lambda: not pile.ports[3].relay, 5, "port 4 off by command")
    telemetry = probe.wait(f"{site.root}/telemetry/{device}", timeout=10)
    # By exception: the pile's own values and the ports that moved, whichever changed.
    assert "ts" in telemetry and (telemetry["values"] or telemetry.get("ports"))


@pytest.mark.parametrize("device", ["pile-2", "pile-3"])  # on the RTU line, and over TCP
def test_second_hot_port_behind_a_cut_one_is_cut_within_the_fast_bound(
    device: str, tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    # Slow reads two minutes apart: only the charger watch can see the second port in time.
    plan = SitePlan(locks={}, ports=12, fast_seconds=0.4, slow_seconds=120.0)
    site_emu = EmulatedSite(tmp_path, plan).start()
    daemon = Daemon(make_site(tmp_path, broker.url, site_emu.config(tmp_path)))
    daemon.start()
    try:
        site = daemon.site
        probe.wait(f"{site.root}/state/{device}", lambda s: s.get("online") is True, timeout=15)
        pile = site_emu.pile(device)

        async def act(fn: Any, *args: Any) -> None:
            fn(*args)

        site_emu.call(act(pile.hold_temperature, 3, 72.0))  # cut, and hot for minutes after
        wait_until(lambda: not pile.ports[2].relay, 5, "port 3's relay to open")
        time.sleep(1.0)
        start = time.monotonic()
        site_emu.call(act(pile.heat_port, 7, 62.0))  # the summary still names port 3 (72 °C)
        wait_until(lambda: not pile.ports[6].relay, 2 * 0.4 + 0.5, "port 7's relay to open")
        took = time.monotonic() - start
        cut = probe.wait(
            f"{site.root}/events/{device}",
            lambda e: e["type"] == "charger.port_cut" and e["data"]["ports"] == [7],
        )
        assert site_emu.call(_summary(pile)) == [720, 3]
    finally:
        daemon.stop()
        site_emu.stop()
    assert took < 2 * 0.4 + 0.5
    assert "port 7" in cut["data"]["reason"] and cut["data"]["done"] == "relay_opened"
    assert [p.number for p in pile.ports if not p.relay] == [3, 7]


async def _summary(pile: Any) -> list[int]:
    return list(pile.input_registers(256, 2))


def test_a_port_beyond_the_piles_own_count_is_invalid(
    pile_daemon: Daemon, piles: EmulatedSite, probe: Probe
) -> None:
    """docs/integrator.md: arguments out of range are `invalid` (the command's fault, nothing
    moved), judged against the port count the pile itself reported."""
    site = pile_daemon.site
    count = said_of_itself(probe, site, "pile-2")["port_count"]
    pile = piles.pile("pile-2")
    before = [p.relay for p in pile.ports]
    answer = send(probe, site, "pile-2", "port_on", {"port": count + 1})
    assert answer["code"] == "invalid"
    assert answer["detail"] == (
        f"bad_port: port {count + 1} is not 1..{count} (this pile has {count} ports)"
    )
    assert [p.relay for p in pile.ports] == before
    assert send(probe, site, "pile-2", "port_off", {"port": count + 1})["code"] == "invalid"
    assert send(probe, site, "pile-2", "port_off", {"port": count})["code"] == "ok"
