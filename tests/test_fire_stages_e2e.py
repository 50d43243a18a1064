"""The two stages of a fire end to end, every emulator together (the smoke receiver on a pty,
piles over RTU and TCP, escape-route locks on the fake BlueZ) against real mosquitto: one
detector cuts and sounds, only a second, independent signal (or a signed ``fire_confirm``)
opens the doors, and a replayed detector never does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.dl_b2 import S_HELD_OPEN, S_LOCKED
from firmware_stubs.site import EmulatedSite, SitePlan
from firmware_stubs.srb433_wire import SOUND_ALL
from tests.harness import Broker, Daemon, Probe, Site, make_site, wait_until
from tests.test_fire_e2e import PILES, lock_states, relays_closed, send, wait_site_up

REV_B, REV_A = 0x0200, 0x0102
GW = "gw-test"


def start_house(tmp_path: Path, firmware: int = REV_B, **models: int) -> EmulatedSite:
    plan = SitePlan(receiver_firmware=firmware)
    plan.detector_models.update(models)
    site = EmulatedSite(tmp_path, plan).start()

    async def plug() -> None:
        for _dev, pile in site.piles():
            pile.plug(1)
            pile.plug(3)

    site.call(plug())
    return site


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    site = start_house(tmp_path)
    yield site
    site.stop()


def running(tmp_path: Path, broker: Broker, house: EmulatedSite, rules: str = "") -> Daemon:
    site = make_site(tmp_path, broker.url, house.config(tmp_path) + "\n" + rules)
    daemon = Daemon(site)
    daemon.start()
    return daemon


def sound_alls(house: EmulatedSite) -> list[bytes]:
    """The SOUND ALL frames on the receiver's line (what the host sent, as the emulator read
    it; a rev A receiver ignores them, but they would still be there)."""

    async def got() -> list[bytes]:
        return [f.payload for f in house.rx.host_frames if f.type == SOUND_ALL]

    return house.call(got())


def first_stage(probe: Probe, site: Site, house: EmulatedSite, detector: str) -> dict[str, Any]:
    """One detector's alarm: every relay open, fire mode published; the doors stay locked."""
    house.call(house.detector(detector).alarm(150))
    # 10 s: the RTU line may be busy with the piles' first full reads right after start-up.
    wait_until(lambda: all(not c for c in relays_closed(house).values()), 10, "every relay open")
    fire = probe.wait(f"{site.root}/events/{GW}", lambda e: e["type"] == "gateway.fire_mode")
    assert (fire["data"]["trigger"], fire["data"]["stage"]) == (detector, "alarm")
    return fire


def confirmed(probe: Probe, site: Site, house: EmulatedSite) -> dict[str, Any]:
    wait_until(lambda: set(lock_states(house).values()) == {S_HELD_OPEN}, 5,
               "every escape door held open")  # fmt: skip
    return probe.wait(f"{site.root}/events/{GW}", lambda e: e["type"] == "gateway.fire_confirmed")


def no_confirmation(probe: Probe, site: Site, since: int = 0) -> None:
    """No ``gateway.fire_confirmed`` among the gateway's events (from the ``since``-th on)."""
    assert not [m for m in probe.on(f"{site.root}/events/{GW}")[since:]
                if m.json()["type"] == "gateway.fire_confirmed"]  # fmt: skip


def test_one_alarm_cuts_sounds_and_keeps_the_doors_locked_even_replayed_ten_times(
    tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe
) -> None:
    daemon = running(tmp_path, broker, house)
    try:
        wait_site_up(probe, daemon.site)
        first_stage(probe, daemon.site, house, "smoke-301")
        wait_until(lambda: sound_alls(house), 5, "SOUND ALL on the receiver's line")
        assert sound_alls(house)[0] == bytes((60,))  # 60 s, repeated every 30 s
        assert house.call(_sounding(house)) is True  # rev B: every detector sounds
        state = probe.wait(f"{daemon.site.root}/state/{GW}",
                           lambda s: s.get("receiver.smoke-rx", {}).get("sound_all") == "sounding")  # fmt: skip
        assert state["receiver.smoke-rx"]["revision"] == "B"
        # Ten replays of smoke-301's frames (new SEQs each): one signal, never two.
        det = house.detector("smoke-301")
        for _ in range(10):
            house.call(det.alarm(150))
        time.sleep(1.5)
        assert set(lock_states(house).values()) == {S_LOCKED}
        no_confirmation(probe, daemon.site)
        alarms = probe.on(f"{daemon.site.root}/alarms")[-1].json()["active"]
        [fire] = [a for a in alarms if a["type"] == "gateway.fire_mode"]
        assert fire["parts"] == {"smoke-301": "active"}
    finally:
        daemon.stop()


async def _sounding(house: EmulatedSite) -> bool:
    return house.rx.sounding


async def _hushed(house: EmulatedSite) -> bool:
    return house.rx.hush_all_count >= 1 and not house.rx.sounding


@pytest.mark.parametrize(
    ("confirm", "by", "device"),
    [
        ("second detector", "smoke.alarm", "smoke-302"),
        ("heat alarm", "smoke.heat_alarm", "smoke-bike"),
        ("pile smoke input", "charger.status", "pile-1"),
        ("signed fire_confirm", "fire_confirm", None),
    ],
)
def test_a_confirming_signal_releases_the_doors_and_says_which(
    tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe,
    confirm: str, by: str, device: str | None,
) -> None:  # fmt: skip
    daemon = running(tmp_path, broker, house)
    site = daemon.site
    try:
        wait_site_up(probe, site)
        first_stage(probe, site, house, "smoke-301")
        assert set(lock_states(house).values()) == {S_LOCKED}
        if confirm == "second detector":
            house.call(house.detector("smoke-302").alarm(120))
        elif confirm == "heat alarm":
            house.call(house.detector("smoke-bike").heat(70))
        elif confirm == "pile smoke input":
            house.call(_smoke_input(house, "pile-1"))
        else:
            result = send(probe, site, GW, "fire_confirm", {"alarm": f"{GW}/gateway.fire_mode"})
            assert result["code"] == "ok", result
        said = confirmed(probe, site, house)
        assert (said["data"]["by"], said["data"]["device"]) == (by, device)
        assert said["data"]["alarm"] == f"{GW}/gateway.fire_mode"
        if device is None:
            assert said["data"]["user"] == "tenant-302"  # whoever signed it
        else:
            assert said["data"]["first"] == "smoke-301"
        for dev in ("door-main", "door-back"):
            released = probe.wait(
                f"{site.root}/events/{dev}", lambda e: e["type"] == "door.released"
            )
            assert released["data"]["verified"] is True
    finally:
        daemon.stop()


async def _smoke_input(house: EmulatedSite, device: str) -> None:
    house.pile(device).smoke_input = True


def test_a_forged_or_replayed_fire_confirm_does_not_release(
    tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe
) -> None:
    daemon = running(tmp_path, broker, house)
    site = daemon.site
    fire_id = f"{GW}/gateway.fire_mode"

    def result_of(cmd: dict[str, Any]) -> str:
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
        return str(probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])["code"])

    try:
        wait_site_up(probe, site)
        first_stage(probe, site, house, "smoke-301")
        forged = site.command(GW, "fire_confirm", {"alarm": fire_id}, key=b"\x00" * 32)
        assert result_of(forged) == "bad_signature"
        time.sleep(1.0)
        assert set(lock_states(house).values()) == {S_LOCKED}
        no_confirmation(probe, site)
        # A genuine confirm of this fire, recorded off the air...
        genuine = site.command(GW, "fire_confirm", {"alarm": fire_id}, lifetime=120)
        assert result_of(genuine) == "ok"
        confirmed(probe, site, house)
        # ...and replayed in the next fire: refused, the doors stay locked.
        house.call(house.detector("smoke-301").clear())
        probe.wait(f"{site.root}/events/smoke-301", lambda e: e["type"] == "smoke.cleared")
        assert send(probe, site, GW, "fire_reset")["code"] == "ok"
        wait_until(lambda: set(lock_states(house).values()) == {S_LOCKED}, 10, "doors relocked")
        wait_until(lambda: house.call(_hushed(house)), 5, "HUSH ALL at the reset")
        topic = f"{site.root}/events/{GW}"
        before = len(probe.on(topic))
        house.call(house.detector("smoke-302").alarm(150))
        wait_until(lambda: any(m.json()["type"] == "gateway.fire_mode"
                               for m in probe.on(topic)[before:]), 5, "the next fire")  # fmt: skip
        probe.publish(f"{site.root}/cmd", json.dumps(genuine))
        wait_until(lambda: [m.json()["code"] for m in probe.on(f"{site.root}/cmd/result")
                            if m.json()["id"] == genuine["id"]] == ["ok", "replayed"], 5,
                   "the replay refused")  # fmt: skip
        time.sleep(1.0)
        assert set(lock_states(house).values()) == {S_LOCKED}
        no_confirmation(probe, site, since=before)
    finally:
        daemon.stop()


def test_any_alarm_releases_on_the_first_frame(
    tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe
) -> None:
    daemon = running(tmp_path, broker, house, '[rules.fire]\ndoor_release = "any_alarm"\n')
    try:
        wait_site_up(probe, daemon.site)
        house.call(house.detector("smoke-302").alarm(150))
        wait_until(lambda: set(lock_states(house).values()) == {S_HELD_OPEN}, 5, "doors open")
        wait_until(lambda: relays_closed(house) == {dev: [] for dev in PILES}, 10, "relays open")
        no_confirmation(probe, daemon.site)  # released, yet not confirmed: one signal
    finally:
        daemon.stop()


def test_a_rev_a_receiver_gets_no_sound_all_and_says_so(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    house = start_house(tmp_path, firmware=REV_A)
    daemon = running(tmp_path, broker, house)
    try:
        wait_site_up(probe, daemon.site)
        first_stage(probe, daemon.site, house, "smoke-301")
        state = probe.wait(f"{daemon.site.root}/state/{GW}",
                           lambda s: s.get("receiver.smoke-rx", {}).get("sound_all") == "unsupported")  # fmt: skip
        assert (state["receiver.smoke-rx"]["revision"], state["receiver.smoke-rx"]["firmware"]) == (
            "A", REV_A,
        )  # fmt: skip
        time.sleep(1.0)
        assert sound_alls(house) == []
        assert not [m for m in probe.on(f"{daemon.site.root}/events/smoke-301")
                    if m.json()["type"] == "gateway.action_failed"]  # fmt: skip
        from tests.cli_support import gatewayd

        text = gatewayd("status", "-c", str(daemon.site.config)).stdout
        assert "receiver smoke-rx: firmware 1.2 (rev A): no SOUND ALL" in text
    finally:
        daemon.stop()
        house.stop()


HOLD_OPEN = 3  # the DL-B2's command code (firmware_stubs/dl_b2.py)


def hold_opens(house: EmulatedSite) -> int:
    """HOLD_OPEN commands the locks have received so far."""
    return sum(
        house.lock_call(lambda lk=lk: sum(1 for c in lk.commands if c.op == HOLD_OPEN))
        for lk in house.locks.values()
    )


@pytest.mark.parametrize("stage", ["alarm", "confirmed"])
def test_a_restart_releases_the_doors_again_only_in_a_confirmed_fire(
    tmp_path: Path, broker: Broker, house: EmulatedSite, probe: Probe, stage: str
) -> None:
    daemon = running(tmp_path, broker, house)
    site = daemon.site
    try:
        wait_site_up(probe, site)
        first_stage(probe, site, house, "smoke-301")
        if stage == "confirmed":
            house.call(house.detector("smoke-302").alarm(120))
            confirmed(probe, site, house)
        sent = hold_opens(house)
        daemon.kill()

        async def reclose() -> None:  # someone switches a port back on meanwhile
            pile = house.pile("pile-3")
            pile.estopped = False
            pile.ports[0].relay = True

        house.call(reclose())
        daemon.start()
        wait_until(lambda: not relays_closed(house)["pile-3"], 10, "the cut re-asserted")
        if stage == "confirmed":
            wait_until(lambda: hold_opens(house) >= sent + 2, 10, "both doors released again")
            assert set(lock_states(house).values()) == {S_HELD_OPEN}
        else:
            time.sleep(2.0)
            assert hold_opens(house) == sent == 0
            assert set(lock_states(house).values()) == {S_LOCKED}
    finally:
        daemon.stop()
