"""Messages that used to send the installer the wrong way (issue 19 item 4): a Modbus scan of
a refused TCP port, or of an RS-485 port the daemon (or another program) holds, says what
really happened, not "check A/B wiring"; `--bus NAME` is not silently ignored when the line
is already a bus; a wrong lock key is named, not "in range and powered?". (`mqtt://` against
a TLS port: test_cli_broker_check.)"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from firmware_stubs.broker import free_port
from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, key_file
from tests.cli_support import ControlDaemon, gatewayd, one_clear_line
from tests.harness import Broker, make_site, wait_until
from tests.test_cli_scan import EbcThread, piles

__all__ = ["ble_world", "piles"]  # fixtures, imported for pytest


def test_scan_modbus_of_a_refused_tcp_port_says_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9").config)
    result = gatewayd("--lang", "en", "scan", "modbus", "--host", "127.0.0.1",
                      "--tcp-port", str(port), "--ids", "1-2", "-c", cfg)  # fmt: skip
    assert result.returncode == 1
    line = one_clear_line(result)
    assert line == (
        f"✗ 127.0.0.1:{port}: connection refused: nothing listens on that port; is it the "
        "device's Modbus TCP port (usually 502) and the right host?"
    )
    assert "A/B" not in result.stdout + result.stderr


def _locked(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def test_scan_modbus_of_a_port_the_daemon_holds_says_busy(
    tmp_path: Path, broker: Broker, piles: EbcThread
) -> None:
    body = (
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nport = "{piles.rtu_path}"\n\n'
        '[[devices]]\nid = "pile-2"\nkind = "charger"\nbus = "rs485"\nunit = 2\n'
    )
    site = make_site(tmp_path, broker.url, body)
    cfg = str(site.config)
    daemon = ControlDaemon(site)
    daemon.start()
    try:
        held = gatewayd("--lang", "en", "scan", "modbus", "--port", piles.rtu_path, "-c", cfg)
    finally:
        daemon.stop()
    assert held.returncode == 1
    assert one_clear_line(held) == (
        f"✗ {piles.rtu_path}: busy: the running daemon holds it (bus rs485); see what it sees: "
        "gatewayd status, or stop it first: sudo systemctl stop gatewayd"
    )
    # Another program holding it (as pyserial's exclusive lock does).
    fd = os.open(piles.rtu_path, os.O_RDWR | os.O_NOCTTY)
    try:
        wait_until(lambda: _locked(fd), 10, "the port free of the stopped daemon")
        other = gatewayd("--lang", "en", "scan", "modbus", "--port", piles.rtu_path, "-c", cfg)
    finally:
        os.close(fd)
    assert other.returncode == 1
    assert one_clear_line(other) == (
        f"✗ {piles.rtu_path}: busy (held by another program; find it: sudo fuser -v {piles.rtu_path})"
    )
    # Free again (daemon stopped, lock dropped): the scan runs and finds the pile.
    free = gatewayd("--lang", "en", "scan", "modbus", "--port", piles.rtu_path, "--ids", "2",
                    "-c", cfg)  # fmt: skip
    assert free.returncode == 0 and "✓ id 2: EBC pile" in free.stdout, free.stdout + free.stderr


def test_scan_modbus_add_says_where_it_added_when_the_line_is_already_a_bus(
    tmp_path: Path, piles: EbcThread
) -> None:
    body = (
        f'[[buses]]\nname = "pile-lan"\ndriver = "modbus"\nhost = "127.0.0.1"\n'
        f"tcp_port = {piles.tcp_port}\n"
    )
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", body).config)
    result = gatewayd("--lang", "en", "scan", "modbus", "--host", "127.0.0.1", "--tcp-port",
                      str(piles.tcp_port), "--ids", "2", "--add", "--bus", "garage", "-c", cfg)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"· 127.0.0.1:{piles.tcp_port} is already bus pile-lan in gateway.toml: added there, "
        "not to a new bus garage"
    ) in result.stdout.splitlines()
    assert "on bus pile-lan" in result.stdout


def test_a_wrong_lock_key_is_named_not_the_range(tmp_path: Path, ble_world: BleWorld) -> None:
    ble_world.emu.add_lock(ADDRESS, KEY)
    wrong = key_file(tmp_path, KEY[::-1], "wrong.key")
    body = (
        '[[buses]]\nname = "ble"\ndriver = "ble"\nscan_seconds = 2.0\n\n'
        f'[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\naddress = "{ADDRESS}"\n'
        f'key_file = "{wrong}"\n'
    )
    cfg = str(make_site(tmp_path, "mqtt://127.0.0.1:9", body).config)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": ble_world.bus.address}
    result = gatewayd("--lang", "en", "test", "door-main", "-c", cfg, env=env)
    assert result.returncode == 1
    assert (
        f"  problem          {ADDRESS}: the lock refused our key (bad_mac); is key_file this "
        "lock's key? (the commissioning card inside its cover)"
    ) in result.stdout.splitlines(), result.stdout
    assert "in range" not in result.stdout
