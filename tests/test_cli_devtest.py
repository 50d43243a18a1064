"""`gatewayd test DEVICE`: a safe check per kind with a clear verdict, against the emulators:
a pile's summary over Modbus TCP, the smoke receiver on a pty, a lock on the fake BlueZ, and
through a running daemon. Nothing is switched: relays stay as they were."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ble_fixtures import BleWorld, ble_world
from tests.cli_support import DETECTOR, ControlDaemon, EmulatorThread, gatewayd, one_clear_line
from tests.harness import Broker, make_site, smoke_config, wait_until
from tests.test_cli_scan import EbcThread, piles

__all__ = ["ble_world", "piles"]  # fixtures, imported for pytest


def test_pile_summary_and_verdict(tmp_path: Path, piles: EbcThread) -> None:
    body = (
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {piles.tcp_port}\n\n'
        '[[devices]]\nid = "pile-2"\nkind = "charger"\nbus = "rs485"\nunit = 2\n\n'
        '[[devices]]\nid = "pile-5"\nkind = "charger"\nbus = "rs485"\nunit = 5\n\n'
        '[[devices]]\nid = "pile-9"\nkind = "charger"\nbus = "rs485"\nunit = 9\n'
    )
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", body).config)
    pile2 = piles.emu.pile(2)
    piles.call(_async(pile2.plug, 1))
    relays_before = piles.call(_async(lambda: [p.relay for p in pile2.ports]))

    ok = gatewayd("test", "pile-2", "-c", cfg)
    assert ok.returncode == 0, ok.stderr
    assert "firmware" in ok.stdout and "ports            10" in ok.stdout
    assert "charging         1" in ok.stdout and "✓ pile-2: OK" in ok.stdout
    assert piles.call(_async(lambda: [p.relay for p in pile2.ports])) == relays_before

    piles.call(_async(piles.emu.pile(5).inject_fault, 3, 3))
    bad = gatewayd("test", "pile-5", "-c", cfg, "--json")
    assert bad.returncode == 1
    body_json = json.loads(bad.stdout)
    assert body_json["ok"] is False and body_json["in fault"] == "3"

    silent = gatewayd("test", "pile-9", "-c", cfg)
    assert silent.returncode == 1
    assert "unit 9: no reply" in silent.stdout and "✗ pile-9: NOT OK" in silent.stdout

    unknown = gatewayd("test", "pile-77", "-c", cfg)
    assert unknown.returncode == 3
    assert "no device pile-77" in one_clear_line(unknown)


async def _async_call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _async(fn: Any, *args: Any) -> Any:
    return _async_call(fn, *args)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    emu.do(emu.rx.detector, DETECTOR)
    yield emu
    emu.close()


def smoke_body(receiver: EmulatorThread) -> str:
    return smoke_config(receiver.rx.path, {"smoke-301": DETECTOR})


def test_smoke_detector_direct_pings_the_receiver(tmp_path: Path, receiver: EmulatorThread) -> None:
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", smoke_body(receiver)).config)
    ok = gatewayd("test", "smoke-301", "-c", cfg)
    assert ok.returncode == 0, ok.stderr
    assert f"answers on {receiver.rx.path}, firmware 1.2, 1 detectors paired" in ok.stdout
    assert "✓ smoke-301: OK" in ok.stdout
    receiver.call(receiver.rx.unplug())
    gone = gatewayd("test", "smoke-301", "-c", cfg)
    assert (
        gone.returncode == 1
        and "no such port" in gone.stdout
        and "✗ smoke-301: NOT OK" in gone.stdout
    )


def test_smoke_detector_direct_in_chinese(tmp_path: Path, receiver: EmulatorThread) -> None:
    """A Zhejiang installer reads what the receiver answered in Chinese; key names and values
    (the port, the firmware, the address) stay as written."""
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", smoke_body(receiver)).config)
    ok = gatewayd("test", "smoke-301", "-c", cfg, env={"LANG": "zh_CN.UTF-8"})
    assert ok.returncode == 0, ok.stderr
    assert f"{receiver.rx.path} 上有应答，固件 1.2，已配对 1 个探测器" in ok.stdout
    assert f"{DETECTOR}（房间 301）" in ok.stdout
    for english in ("answers on", "detectors paired", "shown by", "(room"):
        assert english not in ok.stdout, ok.stdout


def test_smoke_detector_through_the_daemon(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread
) -> None:
    site = make_site(tmp_path, broker.url, smoke_body(receiver))
    daemon = ControlDaemon(site)
    daemon.start()
    try:
        det = receiver.rx.detector(DETECTOR)

        def seen() -> Any:
            receiver.call(det.heartbeat(battery_mv=2800))
            result = gatewayd("test", "smoke-301", "-c", str(site.config), "--json")
            body = json.loads(result.stdout)
            return body if body.get("battery_mv") == 2800 and result.returncode == 0 else None

        body = wait_until(seen, 10, "the detector's heartbeat through the daemon")
        assert body["source"] == "daemon" and body["receiver"] == "answers" and body["ok"] is True
        assert abs(body["last_seen"] - time.time()) < 30  # machines get the moment itself
        shown = gatewayd("--lang", "en", "test", "smoke-301", "-c", str(site.config)).stdout
        assert re.search(r"^  last_seen +\d+ s ago$", shown, re.M), shown  # people, how long ago
        assert "battery_mv       2800 mV" in shown and "rssi_dbm         -60 dBm" in shown
    finally:
        daemon.stop()


def test_lock_status_direct_through_the_ble_driver(tmp_path: Path, ble_world: BleWorld) -> None:
    from tests.ble_fixtures import ADDRESS, KEY, key_file

    lock = ble_world.emu.add_lock(ADDRESS, KEY)
    body = (
        '[[buses]]\nname = "ble"\ndriver = "ble"\nscan_seconds = 2.0\n\n'
        f'[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\naddress = "{ADDRESS}"\nkey_file = "{key_file(tmp_path, KEY)}"\n'
    )
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", body).config)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": ble_world.bus.address}
    result = gatewayd("test", "door-main", "-c", cfg, "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["ok"] is True and status["lock"] == "locked" and status["door"] == "closed"
    assert ble_world.emu.call(lambda: lock.lock_state) == 0  # still locked: a test never opens
    assert {c.op for c in ble_world.emu.call(lock.accepted)} == {4}  # STATUS only, never unlock
