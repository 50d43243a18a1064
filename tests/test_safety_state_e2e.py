"""The alarm lifecycle end to end: the real daemon, a real mosquitto, the EBC pile emulator on an
RS-485 pty line, commands signed as the platform signs them, and the CLI on the control socket.
What is asserted is what an operator sees: the retained alarm list, the command codes, the
relays on the emulator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from tests.harness import REPO, Broker, Daemon, Probe, Site, make_site, wait_until

HEAT = "pile-1/charger.overheat"


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    plan = SitePlan(detectors={}, rtu_piles={"pile-1": 1}, tcp_piles={}, locks={})
    site = EmulatedSite(tmp_path, plan).start()

    async def plug() -> None:
        for port in (1, 2, 3):
            site.pile("pile-1").plug(port)

    site.call(plug())
    yield site
    site.stop()


@pytest.fixture
def pile_site(tmp_path: Path, broker: Broker, house: EmulatedSite) -> Site:
    # Every pile polled at the fast period, at rest too: these tests time a fault against the
    # reads that show it (idle piles are docs/chargers.md's and tests/test_charger_idle.py's).
    body = re.sub(r"(fast_seconds = ([0-9.]+)\n)", r"\1idle_seconds = \2\n", house.config(tmp_path))
    return make_site(tmp_path, broker.url, body)


def closed(house: EmulatedSite) -> list[int]:
    return [p.number for p in house.pile("pile-1").ports if p.relay]


def send(probe: Probe, site: Site, device: str, action: str, args: dict | None = None) -> dict:
    cmd = site.command(device, action, args, user="grid-worker-3")
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    return probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=15)


def alarm(probe: Probe, site: Site, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The overheat alarm in the latest retained list that satisfies ``pred``."""

    def latest() -> dict[str, Any] | None:
        msgs = probe.on(f"{site.root}/alarms")
        if not msgs:
            return None
        found = [a for a in msgs[-1].json()["active"] if a["id"] == HEAT]
        return found[0] if found and pred(found[0]) else None

    return wait_until(latest, timeout, "the overheat alarm as expected")


def gatewayd(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"GATEWAYD_CONTROL_SOCKET": str(site.dir / "control.sock")}
    import os

    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args, "-c", str(site.config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )


def cool(house: EmulatedSite, *ports: int) -> None:
    async def chill() -> None:
        for port in ports:
            p = house.pile("pile-1").port(port)
            p.hot_c, p.temp_c = None, 40.0

    house.call(chill())


def test_overheat_lifecycle_cut_ack_reraise_cool_restart_reset_port_on(
    pile_site: Site, house: EmulatedSite, probe: Probe
) -> None:
    """Defects 1 and 2: the overheat alarm never cleared (port_on forbidden for good), and an
    acknowledged one hid a second port overheating."""
    env = {"GATEWAYD_CONTROL_SOCKET": str(pile_site.dir / "control.sock")}
    daemon = Daemon(pile_site, env=env)
    daemon.start()
    try:
        probe.wait(f"{pile_site.root}/state/pile-1", lambda s: s.get("online") is True, 15)
        wait_until(lambda: closed(house) == [1, 2, 3, 4], 5, "relays closed")
        house.call(_heat(house, 3, 66.0))
        wait_until(lambda: 3 not in closed(house), 5, "port 3 cut")
        first = alarm(probe, pile_site, lambda a: a["parts"] == {"3": "active"})
        assert (first["severity"], first["latched"], first["state"]) == ("critical", True, "active")
        assert (
            send(probe, pile_site, pile_site.gateway_id, "ack_alarm", {"alarm": HEAT})["code"]
            == "ok"
        )
        alarm(probe, pile_site, lambda a: a["acked_by"] == "grid-worker-3")

        # A second port under the acknowledged alarm: cut, and the alarm is news again.
        house.call(_heat(house, 1, 61.0))
        wait_until(lambda: 1 not in closed(house), 5, "port 1 cut")
        again = alarm(probe, pile_site, lambda a: a["parts"].get("1") == "active")
        assert (again["acked_by"], again["count"]) == (None, 2)
        assert again["parts"] == {"1": "active", "3": "active"}

        refused = send(probe, pile_site, "pile-1", "port_on", {"port": 3})
        assert refused["code"] == "forbidden" and HEAT in refused["detail"]
        early = send(probe, pile_site, pile_site.gateway_id, "reset_alarm", {"alarm": HEAT})
        assert early["code"] == "forbidden" and "still active" in early["detail"]

        cool(house, 1, 3)
        alarm(probe, pile_site, lambda a: a["state"] == "cleared")  # over, awaiting a reset
        assert send(probe, pile_site, "pile-1", "port_on", {"port": 3})["code"] == "forbidden"
        daemon.stop()
        daemon.start()  # what was latched survives the restart, cleared and all
        alarm(probe, pile_site, lambda a: a["state"] == "cleared" and a["count"] == 2)
        reset = gatewayd(pile_site, "alarm", "reset", HEAT)
        assert reset.returncode == 0, reset.stderr
        wait_until(
            lambda: probe.on(f"{pile_site.root}/alarms")[-1].json()["active"] == [],
            5,
            "an empty alarm list",
        )
        on = send(probe, pile_site, "pile-1", "port_on", {"port": 3})
        assert on["code"] == "ok"
        wait_until(lambda: 3 in closed(house), 5, "port 3 back on, by a person")
        resets = [
            json.loads(m.payload)
            for m in probe.on(f"{pile_site.root}/events/{pile_site.gateway_id}")
            if json.loads(m.payload)["type"] == "gateway.alarm_reset"
        ]
        assert [(r["data"]["alarm"], r["data"]["source"]) for r in resets] == [(HEAT, "control")]
    finally:
        daemon.stop()


def latest_alarm(probe: Probe, site: Site, type_: str) -> dict[str, Any] | None:
    msgs = probe.on(f"{site.root}/alarms")
    body = msgs[-1].json() if msgs else {"active": []}
    return next((a for a in body["active"] if a["type"] == type_), None)


def test_welded_relay_raises_its_own_critical_alarm(
    pile_site: Site, house: EmulatedSite, probe: Probe
) -> None:
    """Defect 2: a welded relay produced events but no alarm (and, under an acknowledged
    overheat, nothing new at all)."""
    daemon = Daemon(pile_site)
    daemon.start()
    try:
        probe.wait(f"{pile_site.root}/state/pile-1", lambda s: s.get("online") is True, 15)
        pile = house.pile("pile-1")
        house.call(_run(lambda: pile.weld_relay(2)))
        house.call(_heat(house, 2, 70.0))
        welded = wait_until(
            lambda: latest_alarm(probe, pile_site, "charger.relay_welded"), 10, "the welded alarm"
        )
        assert (welded["severity"], welded["latched"], welded["parts"]) == (
            "critical", True, {"2": "active"},
        )  # fmt: skip
        # The pile's own account, not a second alarm for the same thing.
        assert latest_alarm(probe, pile_site, "charger.cut_failed") is None
        assert send(probe, pile_site, "pile-1", "port_on", {"port": 2})["code"] == "forbidden"
    finally:
        daemon.stop()


def test_a_cut_the_pile_never_carried_out_is_a_critical_alarm(
    pile_site: Site, house: EmulatedSite, probe: Probe
) -> None:
    """Defect 2: a failed cut (gateway.action_failed) produced an event but no alarm."""
    daemon = Daemon(pile_site)
    daemon.start()
    try:
        probe.wait(f"{pile_site.root}/state/pile-1", lambda s: s.get("online") is True, 15)
        pile = house.pile("pile-1")

        # Port 4 overheats; the pile never carries out the cut: it falls silent at the write
        # (and stays so), whichever read showed the heat.
        async def heat_then_fall_silent() -> None:
            answer = pile.handle

            def deaf_to_writes(pdu: bytes, broadcast: bool = False) -> bytes | None:
                if pdu[:1] in (b"\x05", b"\x0f", b"\x06"):
                    pile.silent = True
                    return None
                return answer(pdu, broadcast)

            pile.handle = deaf_to_writes  # type: ignore[method-assign]
            pile.heat_port(4, 65.0)

        house.call(heat_then_fall_silent())
        failed = wait_until(
            lambda: latest_alarm(probe, pile_site, "charger.cut_failed"), 20, "the failed cut"
        )
        assert (failed["severity"], failed["latched"], failed["parts"]) == (
            "critical", True, {"4": "active"},
        )  # fmt: skip
        assert 4 in closed(house)  # still live: that is why it is critical
    finally:
        daemon.stop()


async def _run(fn: Any) -> None:
    fn()


async def _heat(house: EmulatedSite, port: int, celsius: float) -> None:
    house.pile("pile-1").heat_port(port, celsius)


@pytest.mark.parametrize("how", ["nul_filled", "truncated", "empty"])
def test_a_lost_state_is_said_everywhere_and_every_charger_stays_off(
    pile_site: Site, house: EmulatedSite, probe: Probe, how: str
) -> None:
    """Defect 6: an empty, truncated or NUL-filled state.json (what a power cut does to an SD
    card) made the gateway start with fire_mode false, silently."""
    daemon = Daemon(pile_site)
    daemon.start()
    data = pile_site.dir / "data"
    try:
        probe.wait(f"{pile_site.root}/state/pile-1", lambda s: s.get("online") is True, 15)
        house.call(_heat(house, 2, 66.0))  # an overheat alarm worth remembering
        alarm(probe, pile_site, lambda a: a["parts"] == {"2": "active"})
    finally:
        daemon.stop()
    for name in ("state.json", "state.json.bak"):
        raw = (data / name).read_bytes()
        damaged = {"nul_filled": b"\0" * len(raw), "truncated": raw[: len(raw) // 2], "empty": b""}
        (data / name).write_bytes(damaged[how])
    cool(house, 2)
    house.call(_run(lambda: house.pile("pile-1").port(2).__setattr__("relay", True)))
    assert closed(house) == [1, 2, 3, 4]  # someone switched every port on meanwhile
    daemon.start()
    try:
        lost = probe.wait(
            f"{pile_site.root}/events/{pile_site.gateway_id}",
            lambda e: e["type"] == "gateway.state_lost",
        )
        assert lost["severity"] == "critical"
        wait_until(lambda: closed(house) == [], 10, "every port switched off")
        listed = probe.wait(
            f"{pile_site.root}/alarms",
            lambda b: any(a["type"] == "gateway.state_lost" for a in b["active"]),
        )
        [state_lost] = [a for a in listed["active"] if a["type"] == "gateway.state_lost"]
        assert (state_lost["latched"], state_lost["state"]) == (True, "cleared")  # reset it
        assert "CRITICAL" in daemon.output() and "state" in daemon.output()
        # A person turns a port back on: allowed (nothing covers it any more).
        assert send(probe, pile_site, "pile-1", "port_on", {"port": 1})["code"] == "ok"
        wait_until(lambda: closed(house) == [1], 5, "port 1 on, by a person")
    finally:
        daemon.stop()
