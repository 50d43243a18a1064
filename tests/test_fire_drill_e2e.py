"""The monthly fire drill end to end, every emulator together (the smoke receiver on a pty,
piles over RTU and TCP, escape-route locks on the fake BlueZ) against real mosquitto: a drill
without --actuate moves nothing and says "drill" in every message; with it the relays open,
the detectors sound then hush, the doors release then relock; the house never enters fire
mode; the signed command is checked like any other; a drill in a real fire is refused."""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.dl_b2 import S_LOCKED
from firmware_stubs.site import EmulatedSite
from firmware_stubs.srb433_wire import HUSH_ALL
from tests.cli_support import gatewayd
from tests.contract_support import problems
from tests.harness import Broker, Probe, Site, wait_until
from tests.test_fire_e2e import PILES, lock_states, relays_closed, send, wait_site_up
from tests.test_fire_stages_e2e import (
    GW,
    first_stage,
    hold_opens,
    running,
    sound_alls,
    start_house,
)

FIRE_MODE = f"{GW}/gateway.fire_mode"


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    site = start_house(tmp_path)
    yield site
    site.stop()


@pytest.fixture
def site(tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe) -> Iterator[Site]:
    """The daemon over the emulated house, every device online (for this module: the
    conftest's is a bare site)."""
    daemon = running(tmp_path, broker, house)
    try:
        wait_site_up(probe, daemon.site)
        yield daemon.site
    finally:
        daemon.stop()


def hush_alls(house: EmulatedSite) -> int:
    async def got() -> int:
        return sum(1 for f in house.rx.host_frames if f.type == HUSH_ALL)

    return house.call(got())


def drill_events(probe: Probe, site: Site, since: int = 0) -> list[dict[str, Any]]:
    return [m.json() for m in probe.messages[since:]
            if m.topic.startswith(f"{site.root}/events/")]  # fmt: skip


def finished(probe: Probe, site: Site) -> dict[str, Any]:
    return probe.wait(f"{site.root}/events/{GW}", lambda e: e["type"] == "gateway.drill"
                      and e["data"]["phase"] == "finished", timeout=30)  # fmt: skip


def never_in_fire_mode(probe: Probe, site: Site) -> None:
    """Neither the status nor the retained alarm list ever said fire mode."""
    statuses = [m.json() for m in probe.on(f"{site.root}/status")]
    assert statuses and not [s for s in statuses if s.get("fire_mode")]
    lists = [m.json()["active"] for m in probe.on(f"{site.root}/alarms")]
    assert not [a for active in lists for a in active if a["type"] == "gateway.fire_mode"]
    status = json.loads(gatewayd("status", "--json", "-c", str(site.config)).stdout)
    assert status["fire_mode"] is False


def by_phase(summary: dict[str, Any]) -> dict[str, set[tuple[str, str, str]]]:
    return {s["phase"]: {(a["device"], a["action"], a["outcome"]) for a in s["actions"]}
            for s in summary["steps"]}  # fmt: skip


def test_a_drill_without_actuate_moves_nothing_and_every_message_says_drill(
    house: EmulatedSite, probe: Probe, site: Site
) -> None:
    relays = relays_closed(house)
    assert all(relays.values())  # ports 1 and 3 charging on every pile
    mark = len(probe.messages)
    out = gatewayd("drill", "fire", "--json", "--note", "monthly", "-c", str(site.config))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["drill"], summary["phase"], summary["moved"]) == (True, "finished", 0)
    assert [(s["phase"], s["by"], s["device"]) for s in summary["steps"]] == [
        ("alarm", "smoke.alarm", "smoke-301"),
        ("confirmed", "smoke.alarm", "smoke-302"),
        ("reset", "gateway.fire_reset", None),
    ]
    steps = by_phase(summary)
    detectors = {"smoke-301", "smoke-302", "smoke-bike"}
    assert steps["alarm"] == {*((p, "all_off", "would") for p in PILES),
                              *((d, "sound", "would") for d in detectors)}  # fmt: skip
    assert steps["confirmed"] == {("door-main", "hold_open", "would"),
                                  ("door-back", "hold_open", "would")}  # fmt: skip
    assert steps["reset"] == {*((d, "hush", "would") for d in detectors),
                              ("door-main", "lock", "would"), ("door-back", "lock", "would")}  # fmt: skip
    # The platform saw the whole linkage, each message of it a drill's.
    finished(probe, site)
    time.sleep(1.0)
    events = drill_events(probe, site, mark)
    types = [e["type"] for e in events]
    assert types[0] == "gateway.drill"
    for t in ("smoke.alarm", "gateway.fire_mode", "gateway.fire_confirmed",
              "gateway.fire_reset"):  # fmt: skip
        assert t in types, types
    assert all(e["data"].get("drill") is True for e in events), types
    for body in events:  # and each is what the contract says an event is
        assert problems("schemas/event.json", body) == [], body
    started = next(e for e in events if e["type"] == "gateway.drill")
    me = pwd.getpwuid(os.getuid()).pw_name  # the peer's account, from the kernel
    assert (started["data"]["user"], started["data"]["note"]) == (me, "monthly")
    assert started["data"]["source"] == "control" and started["data"]["actuate"] is False
    # Nothing moved: every relay as it was, nothing on the receiver's line, doors locked.
    assert relays_closed(house) == relays
    assert sound_alls(house) == [] and hush_alls(house) == 0
    assert hold_opens(house) == 0 and set(lock_states(house).values()) == {S_LOCKED}
    never_in_fire_mode(probe, site)
    cut = [e for e in events if e["type"] == "charger.port_cut"]
    assert cut == []


def test_an_actuated_drill_cuts_sounds_releases_then_hushes_and_relocks(
    house: EmulatedSite, probe: Probe, site: Site
) -> None:
    mark = len(probe.messages)
    result = send(probe, site, GW, "drill", {"actuate": True})
    assert result["code"] == "ok", result
    summary = result["data"]
    assert (summary["drill"], summary["phase"], summary["failed"]) == (True, "finished", 0)
    steps = by_phase(summary)
    assert {o for s in steps.values() for _d, _a, o in s} == {"done"}
    assert summary["moved"] == sum(len(s) for s in steps.values())
    # Chargers cut, and they stay off: nothing re-energises by itself.
    assert relays_closed(house) == {dev: [] for dev in PILES}
    # Every detector sounded, then was hushed; the doors were released, then relocked.
    assert len(sound_alls(house)) == 1 and hush_alls(house) == 1
    assert hold_opens(house) == 2
    assert set(lock_states(house).values()) == {S_LOCKED}
    finished(probe, site)
    time.sleep(2.0)
    assert relays_closed(house) == {dev: [] for dev in PILES}
    events = drill_events(probe, site, mark)
    cuts = [e for e in events if e["type"] == "charger.port_cut"]
    assert {e["device"] for e in cuts} == set(PILES)
    assert all(e["data"]["origin"] == "drill" and e["data"]["drill"] is True for e in cuts)
    ours = [e for e in events if e["device"] == GW or e["type"] == "smoke.alarm"]
    assert all(e["data"].get("drill") is True for e in ours)
    started = next(e for e in ours if e["type"] == "gateway.drill")
    assert (started["data"]["user"], started["data"]["source"]) == ("tenant-302", "platform")
    never_in_fire_mode(probe, site)


def test_a_forged_or_replayed_drill_command_is_refused(
    house: EmulatedSite, probe: Probe, site: Site
) -> None:

    def codes(cmd: dict[str, Any]) -> list[str]:
        return [m.json()["code"] for m in probe.on(f"{site.root}/cmd/result")
                if m.json()["id"] == cmd["id"]]  # fmt: skip

    forged = site.command(GW, "drill", {"actuate": True}, key=b"\x00" * 32)
    probe.publish(f"{site.root}/cmd", json.dumps(forged))
    wait_until(lambda: codes(forged) == ["bad_signature"], 10, "the forgery refused")
    genuine = site.command(GW, "drill", {"actuate": False}, lifetime=120)
    probe.publish(f"{site.root}/cmd", json.dumps(genuine))
    wait_until(lambda: codes(genuine) == ["ok"], 15, "the drill done")
    probe.publish(f"{site.root}/cmd", json.dumps(genuine))
    wait_until(lambda: codes(genuine) == ["ok", "replayed"], 10, "the replay refused")
    time.sleep(1.0)
    starts = [e for e in drill_events(probe, site)
              if e["type"] == "gateway.drill" and e["data"]["phase"] == "started"]  # fmt: skip
    assert len(starts) == 1  # the genuine one; the forgery and the replay ran nothing
    assert hold_opens(house) == 0 and sound_alls(house) == []


def test_a_drill_in_a_real_fire_is_refused_and_the_fire_goes_on(
    house: EmulatedSite, probe: Probe, site: Site
) -> None:
    first_stage(probe, site, house, "smoke-301")
    mark = len(probe.messages)
    result = send(probe, site, GW, "drill", {"actuate": True})
    assert (result["code"], result["data"]) == ("forbidden", {"drill": True})
    assert "fire mode" in result["detail"]
    out = gatewayd("drill", "fire", "-c", str(site.config))
    assert out.returncode != 0 and "fire mode" in out.stderr, out.stderr
    time.sleep(1.0)
    assert not [e for e in drill_events(probe, site, mark) if e["data"].get("drill")]
    assert hush_alls(house) == 0  # the fire's sounders were left sounding
    alarms = probe.on(f"{site.root}/alarms")[-1].json()["active"]
    assert [a["id"] for a in alarms if a["type"] == "gateway.fire_mode"] == [FIRE_MODE]
    # The fire goes on as ever: a second detector confirms it and opens the doors.
    house.call(house.detector("smoke-302").alarm(120))
    probe.wait(f"{site.root}/events/{GW}", lambda e: e["type"] == "gateway.fire_confirmed")
