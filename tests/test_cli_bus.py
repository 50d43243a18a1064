"""A lock is added without hand-editing TOML (issue 19 item 3): `gatewayd bus add/list/remove`
edit the [[buses]] as `device` edits the [[devices]], and `scan ble --add` puts the Bluetooth
bus and the lock it heard (on the fake BlueZ) into gateway.toml, ready for `gatewayd test`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from gatewayd import config
from gatewayd.cli.main import cli
from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, key_file
from tests.cli_support import gatewayd
from tests.harness import make_site

__all__ = ["ble_world"]  # the fixture, imported for pytest


def test_bus_add_list_and_remove_edit_gateway_toml(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, "mqtt://127.0.0.1:9").config
    cfg.write_text(cfg.read_text() + "\n# the Pi's own Bluetooth\n")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--lang", "en", *args, "-c", str(cfg)])
        return result.exit_code, result.output

    assert run("bus", "add", "ble", "--driver", "ble") == (
        0,
        f"✓ added bus ble (driver ble) to {cfg}\n"
        "  add its devices: gatewayd scan --help, or: gatewayd device add ID --bus ble\n",
    )
    code, out = run(
        "bus", "add", "rs485", "--driver", "modbus", "port=/dev/ttyUSB0", "baudrate=9601"
    )
    assert code == 2 and "baudrate=9601: expected a standard baud rate" in out
    assert run("bus", "add", "ble", "--driver", "ble")[1] == "✗ a bus ble exists already\n"
    assert run("bus", "add", "rs485-basement", "--driver", "modbus", "port=/dev/ttyUSB0")[0] == 0
    # The line carries piles and electrical fire detectors (the EFM-4 plugin): say which.
    assert (
        run(
            "device", "add", "pile-1", "--bus", "rs485-basement", "--kind", "charger", "--unit", "1"
        )[0]
        == 0
    )
    loaded = config.load(str(cfg))
    assert [(b.name, b.driver) for b in loaded.buses] == [
        ("ble", "ble"),
        ("rs485-basement", "modbus"),
    ]
    assert loaded.bus("rs485-basement").settings["port"] == "/dev/ttyUSB0"

    code, out = run("bus", "list")
    assert code == 0
    assert out.splitlines() == [
        "ble             ble                   0 device(s)",
        "rs485-basement  modbus  /dev/ttyUSB0  1 device(s)",
    ]
    assert [b["name"] for b in json.loads(run("bus", "list", "--json")[1])] == [
        "ble",
        "rs485-basement",
    ]

    code, out = run("bus", "remove", "rs485-basement")
    assert code == 2 and "bus rs485-basement carries pile-1; remove them first" in out
    assert run("bus", "remove", "nope")[0] == 3
    code, out = run("bus", "remove", "rs485-basement", "--with-devices")
    assert code == 0 and "removed bus rs485-basement and its devices pile-1" in out
    loaded = config.load(str(cfg))
    assert [b.name for b in loaded.buses] == ["ble"] and loaded.devices == ()
    assert "# the Pi's own Bluetooth" in cfg.read_text()  # comments kept


def test_scan_ble_add_puts_the_bus_and_the_lock_in_gateway_toml(
    tmp_path: Path, ble_world: BleWorld
) -> None:
    other = "C0:FF:EE:00:00:02"
    ble_world.emu.add_lock(ADDRESS, KEY)
    ble_world.emu.add_lock(other, KEY[::-1])
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9").config)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": ble_world.bus.address}
    key = key_file(tmp_path, KEY)

    def scan(*args: str) -> tuple[int, str]:
        r = gatewayd("--lang", "en", "scan", "ble", "--seconds", "2", *args, "-c", cfg, env=env)
        return r.returncode, r.stdout + r.stderr

    code, out = scan("--add", "--key-file", key)  # one key, two new locks: which?
    assert code == 2 and "several new locks heard" in out and ADDRESS in out and other in out
    assert config.load(cfg).buses == ()

    code, out = scan("--add", "--address", ADDRESS, "--key-file", key, "escape_route=true")
    assert code == 0, out
    assert "✓ added bus ble (driver ble)" in out and f"✓ added door-main ({ADDRESS})" in out
    code, out = scan("--add")  # no key for the other one, and no terminal to ask at
    assert code == 0 and f"· {other}: not added without its key file" in out
    assert f"{ADDRESS}  " in out and "(configured: door-main)" in out
    loaded = config.load(cfg)
    assert [(b.name, b.driver) for b in loaded.buses] == [("ble", "ble")]  # added once
    door = loaded.device("door-main")
    assert door is not None and door.settings["address"] == ADDRESS
    assert door.settings["escape_route"] is True
    # The lock as added answers `gatewayd test` with its key.
    tested = gatewayd("test", "door-main", "-c", cfg, "--json", env=env)
    assert tested.returncode == 0 and json.loads(tested.stdout)["lock"] == "locked", tested.stdout
