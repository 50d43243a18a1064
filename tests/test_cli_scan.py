"""`gatewayd scan serial|modbus|ble` find the emulators and nothing else: the SRB-433 receiver
among ptys, EBC piles on a pty RS-485 line and over Modbus TCP, DL-B2 locks on the fake BlueZ.
Each scan runs as a real subprocess, as on site."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd import config
from tests.ble_fixtures import BleWorld, ble_world
from tests.cli_support import EmulatorThread, gatewayd, one_clear_line
from tests.harness import REPO, make_site

__all__ = ["ble_world"]  # the fixture, imported for pytest


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    emu.do(emu.rx.detector, "1A2B3C4D")
    yield emu
    emu.close()


def test_scan_serial_finds_the_receiver_and_nothing_else(
    tmp_path: Path, receiver: EmulatorThread
) -> None:
    master, slave = os.openpty()  # a serial port where nothing answers
    try:
        silent = os.ttyname(slave)
        result = gatewayd(
            "scan",
            "serial",
            "--port",
            silent,
            "--port",
            receiver.rx.path,
            "--port",
            str(tmp_path / "ttyUSB7"),
            "--json",
        )
        assert result.returncode == 0, result.stderr
        rows = {r["port"]: r for r in json.loads(result.stdout)}
        assert [p for p, r in rows.items() if r["receiver"]] == [receiver.rx.path]
        assert rows[receiver.rx.path]["firmware"] == "1.2" and rows[receiver.rx.path]["paired"] == 1
        assert rows[silent]["receiver"] is False and "error" not in rows[silent]
        assert rows[str(tmp_path / "ttyUSB7")]["error"] == "no such port"
        none = gatewayd("scan", "serial", "--port", silent, "--timeout", "0.2")
        assert none.returncode == 3 and "no receiver found" in none.stdout
    finally:
        os.close(master)
        os.close(slave)


def test_scan_serial_add_writes_a_bus_the_daemon_accepts(
    tmp_path: Path, receiver: EmulatorThread
) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    result = gatewayd("scan", "serial", "--port", receiver.rx.path, "--add", "-c", str(site.config))
    assert result.returncode == 0, result.stderr
    assert "✓ added bus smoke-rx (serial" in result.stdout
    [bus] = config.load(str(site.config)).buses
    assert (bus.name, bus.driver, bus.settings["port"]) == ("smoke-rx", "serial", receiver.rx.path)
    again = gatewayd("scan", "serial", "--port", receiver.rx.path, "--add", "-c", str(site.config))
    assert "already configured as bus smoke-rx" in again.stdout
    assert len(config.load(str(site.config)).buses) == 1


class EbcThread:
    """EBC piles (the emulator from firmware_stubs) on their own event loop."""

    def __init__(self, units: list[int]) -> None:
        from firmware_stubs.ebc_pile import EbcEmulator, Pile

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emu = EbcEmulator([Pile(unit=u, ports_n=10) for u in units])
        self.call(self.emu.__aenter__())
        self.tcp_port = self.call(self.emu.serve_tcp("127.0.0.1", 0))

        async def rtu() -> str:
            return self.emu.open_rtu()

        self.rtu_path = self.call(rtu())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.call(self.emu.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def piles() -> Iterator[EbcThread]:
    emu = EbcThread([2, 5])
    yield emu
    emu.close()


def test_scan_modbus_tcp_finds_the_piles_and_adds_them(tmp_path: Path, piles: EbcThread) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    args = [
        "scan",
        "modbus",
        "--host",
        "127.0.0.1",
        "--tcp-port",
        str(piles.tcp_port),
        "--ids",
        "1-6",
    ]
    found = gatewayd(*args, "--json")
    assert found.returncode == 0, found.stderr
    assert [(p["unit"], p["ports"]) for p in json.loads(found.stdout)] == [(2, 10), (5, 10)]
    added = gatewayd(*args, "--add", "-c", str(site.config))
    assert added.returncode == 0, added.stderr
    assert "✓ added pile-2, pile-5 on bus modbus-tcp" in added.stdout
    cfg = config.load(str(site.config))
    assert [(d.id, d.settings["unit"]) for d in cfg.devices] == [("pile-2", 2), ("pile-5", 5)]
    assert cfg.buses[0].settings["host"] == "127.0.0.1"
    twice = gatewayd(*args, "--add", "-c", str(site.config))
    assert (
        "id 2: already configured" in twice.stdout
        and len(config.load(str(site.config)).devices) == 2
    )


def test_scan_modbus_rtu_on_a_line(piles: EbcThread) -> None:
    found = gatewayd("scan", "modbus", "--port", piles.rtu_path, "--ids", "1-3,5", "--json")
    assert found.returncode == 0, found.stderr
    assert [p["unit"] for p in json.loads(found.stdout)] == [2, 5]
    nothing = gatewayd("scan", "modbus", "--port", piles.rtu_path, "--ids", "7-8")
    # Every family on Modbus is named ("no piles or electrical fire detectors answered").
    assert nothing.returncode == 3 and re.search(r"no piles( or [a-z ]+)? answered", nothing.stdout)


def test_scan_modbus_ctrl_c_stops_cleanly(piles: EbcThread) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "scan", "modbus", "--host", "127.0.0.1", "--tcp-port", str(piles.tcp_port), "--ids", "1-247", "--timeout", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    time.sleep(2.5)  # past ids 2 and 5
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "✓ id 2: EBC pile" in out
    assert re.search(r"✗ interrupted; 2 (piles|devices) found before that", out)
    assert "Traceback" not in err


def test_scan_modbus_wrong_input_is_one_line(tmp_path: Path) -> None:
    assert "give --port (RS-485) or --host" in one_clear_line(gatewayd("scan", "modbus"))
    assert "--ids '1-300'" in one_clear_line(
        gatewayd("scan", "modbus", "--host", "x", "--ids", "1-300")
    )
    line = one_clear_line(gatewayd("scan", "modbus", "--port", str(tmp_path / "ttyUSB3")))
    assert "no such port; is the RS-485 adapter plugged in?" in line


def test_scan_ble_lists_locks_with_rssi_and_nothing_else(
    tmp_path: Path, ble_world: BleWorld
) -> None:
    from firmware_stubs.fake_bluez import Advert, Peripheral

    class Headphones(Peripheral):
        address = "11:22:33:44:55:66"
        services = ()

        def advertisement(self) -> Advert:
            return Advert("Buds", ["0000110b-0000-1000-8000-00805f9b34fb"], rssi=-40)

        async def read(self, uuid: str) -> bytes:
            return b""

        async def write(self, uuid: str, data: bytes, with_response: bool) -> None:
            pass

    ble_world.emu.add_lock("C0:FF:EE:00:00:01", bytes(16))
    ble_world.emu.add(Headphones())
    env = {"DBUS_SYSTEM_BUS_ADDRESS": ble_world.bus.address}
    result = gatewayd("scan", "ble", "--seconds", "1.5", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["address"], r["name"], r["lock"]) for r in rows] == [
        ("C0:FF:EE:00:00:01", "DL-B2-0001", True)
    ]
    assert isinstance(rows[0]["rssi"], int) and -100 < rows[0]["rssi"] < 0
    everything = gatewayd("scan", "ble", "--seconds", "1.5", "--all", "--json", env=env)
    assert {r["address"] for r in json.loads(everything.stdout)} == {
        "C0:FF:EE:00:00:01",
        "11:22:33:44:55:66",
    }
    text = gatewayd("scan", "ble", "--seconds", "1.5", env=env).stdout
    assert "C0:FF:EE:00:00:01  DL-B2-0001" in text and "RSSI" in text
