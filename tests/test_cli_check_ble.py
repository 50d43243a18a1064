"""`gatewayd check --all` in a house with a lock agrees with what `scan ble` and the daemon use
(issue 19 item 7): the adapter is asked of BlueZ as bleak asks it (the fake BlueZ on a private
D-Bus here), and with the daemon running its connected locks prove the adapter. The demo's
house, while the demo runs, checks all green."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, key_file
from tests.cli_support import gatewayd
from tests.harness import REPO, Broker, make_site

__all__ = ["ble_world"]  # the fixture, imported for pytest


def _lock_site(tmp_path: Path, broker: Broker, adapter: str) -> str:
    body = (
        f'[[buses]]\nname = "ble"\ndriver = "ble"\nadapter = "{adapter}"\n\n'
        f'[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\naddress = "{ADDRESS}"\n'
        f'key_file = "{key_file(tmp_path, KEY)}"\n'
    )
    return str(make_site(tmp_path, broker.url, body).config)


def test_check_all_finds_the_adapter_scan_ble_uses(
    tmp_path: Path, broker: Broker, ble_world: BleWorld
) -> None:
    ble_world.emu.add_lock(ADDRESS, KEY)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": ble_world.bus.address}
    cfg = _lock_site(tmp_path, broker, "hci0")
    scan = gatewayd("--lang", "en", "scan", "ble", "--seconds", "2", "-c", cfg, env=env)
    assert ADDRESS in scan.stdout, scan.stdout + scan.stderr  # the adapter the scan used...
    check = gatewayd("--lang", "en", "check", "--all", "-c", cfg, env=env)
    lines = check.stdout.splitlines()
    assert "✓ ble: Bluetooth adapter hci0 present" in lines, check.stdout  # ...is found here
    assert "· door-main: check it with: gatewayd test door-main" in lines
    assert check.returncode == 0 and "all checks passed" in lines, check.stdout

    # An adapter BlueZ does not have is still missing.
    other = _lock_site(tmp_path, broker, "hci1")
    missing = gatewayd("--lang", "en", "check", "--all", "-c", other, env=env)
    assert missing.returncode == 1
    assert "✗ ble: Bluetooth adapter hci1 not found; check: bluetoothctl list" in missing.stdout


def test_check_all_is_green_on_the_demo_site_while_the_demo_runs(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with open(tmp_path / "out.txt", "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--pace", "0.1", "--dir", str(work)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "the house keeps running" not in (tmp_path / "out.txt").read_text():
            assert time.monotonic() < deadline and demo.poll() is None, (
                tmp_path / "out.txt"
            ).read_text()
            time.sleep(0.3)
        # This shell's system bus is not the demo's private one: the daemon's view decides.
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        check = subprocess.run(
            [sys.executable, "-m", "gatewayd", "--lang", "en", "check", "--all",
             "-c", str(work / "gateway.toml")],
            capture_output=True, text=True, cwd=REPO, timeout=60, env=env,
        )  # fmt: skip
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
    lines = check.stdout.splitlines()
    assert check.returncode == 0, check.stdout + check.stderr
    assert lines[-1] == "all checks passed" and not [ln for ln in lines if ln.startswith("✗")]
    for seen in (
        "ble: Bluetooth adapter hci0 in use by the daemon (2 lock(s) connected)",
        "door-main: connected",
        "door-back: connected",
        "pile-3 (unit 1): online",
    ):
        assert f"✓ {seen}" in lines, check.stdout
    assert any(ln.startswith("✓ daemon running") for ln in lines)
    assert any(ln.startswith("✓ broker mqtt://127.0.0.1:") for ln in lines)
