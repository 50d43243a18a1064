"""A third party's device family and driver, installed as a plugin package, bring their own
CLI with no change to the core: a `pair` subcommand, a `scan` subcommand, devices that
`scan modbus` finds beside the piles on the same RS-485 line (and adds by their own kind and
id prefix), and their lines in `check --all`. The line is the EBC emulator's pty, with one
more slave on it that is not a pile: a meter the plugin knows by its model register."""

from __future__ import annotations

import json
import struct
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import gatewayd, one_clear_line
from tests.harness import install_plugin, make_site
from tests.test_cli_scan import EbcThread

PLUGIN = '''
from dataclasses import dataclass

import click

from gatewayd.driver import Driver
from gatewayd.family import Family, Found
from gatewayd.schema import Int
from gatewayd.settings import Settings, setting

METER_MODEL = 0x4D54


@dataclass(frozen=True, kw_only=True)
class MeterSettings(Settings):
    unit: int = setting(Int(1, 247, doc="Modbus slave address"))


class MeterFamily(Family):
    kind = "meter"
    title = "energy meter"
    buses = ("modbus",)
    Settings = MeterSettings
    address = "unit"
    id_prefix = "meter-"
    commands = {"pair": {"remote": "acme_plugin:pair_remote"}}

    async def identify(self, driver, link, address, timeout):
        regs = await link.read_registers(address, 0, 2, timeout)
        if regs[0] != METER_MODEL:
            return None
        firmware = f"{regs[1] >> 8}.{regs[1] & 0xFF}"
        return Found("meter", f"ACME meter, firmware {firmware}", {"firmware": firmware})


class RadioDriver(Driver):
    name = "acme-radio"
    bus_schema = {"channel": Int(1, 16, default=3)}
    commands = {"scan": {"acme-radio": "acme_plugin:scan_radio"}}

    async def run(self):
        pass

    @classmethod
    def check_online(cls, bus, devices, seen):
        channel = bus.settings["channel"]
        yield f"bus:{bus.name}", True, f"{bus.name}: ACME radio on channel {channel} answers"


class QuietDriver(Driver):
    name = "acme-quiet"

    async def run(self):
        pass


@click.command("remote")
@click.option("--seconds", default=5, show_default=True)
def pair_remote(seconds):
    """Pair an ACME remote control."""
    click.echo(f"ACME remotes may join for {seconds} s")


@click.command("acme-radio")
def scan_radio():
    """Find the ACME radio."""
    click.echo("ACME radio on channel 3")
'''


class Meter:
    """A Modbus slave that is not a pile, for the EBC emulator's line: 8 input registers,
    model 0x4D54 ("MT") at 0 and firmware 2.0 at 1; anything else is exception 02."""

    silent = garble = False
    ignore_broadcast = True
    answer_as = None
    REGISTERS = (0x4D54, 0x0200, 0, 0, 0, 0, 0, 0)

    def advance(self, seconds: float) -> None:
        pass

    def handle(self, pdu: bytes, broadcast: bool = False) -> bytes:
        addr, count = struct.unpack(">HH", pdu[1:5])
        if pdu[0] != 0x04 or addr + count > len(self.REGISTERS):
            return bytes([pdu[0] | 0x80, 0x02])
        regs = self.REGISTERS[addr : addr + count]
        return bytes([0x04, 2 * count]) + struct.pack(f">{count}H", *regs)


@pytest.fixture
def line() -> Iterator[EbcThread]:
    emu = EbcThread([2, 5])
    emu.emu.piles[7] = Meter()  # type: ignore[assignment]  # a slave the emulator only carries
    yield emu
    emu.close()


@pytest.fixture
def acme(tmp_path: Path) -> dict[str, str]:
    return install_plugin(
        tmp_path / "plugins",
        "acme_plugin",
        PLUGIN,
        {"acme-radio": "RadioDriver", "acme-quiet": "QuietDriver"},
        {"meter": "MeterFamily"},
    )


def test_a_plugin_brings_its_pair_and_scan_commands(acme: dict[str, str]) -> None:
    pair_help = gatewayd("pair", "--help", env=acme)
    assert "remote  Pair an ACME remote control." in pair_help.stdout
    assert "smoke " in pair_help.stdout  # the built-in family's, beside it
    paired = gatewayd("pair", "remote", "--seconds", "2", env=acme)
    assert (paired.returncode, paired.stdout) == (0, "ACME remotes may join for 2 s\n")
    scan_help = gatewayd("scan", "--help", env=acme)
    for name in ("acme-radio", "ble", "modbus", "serial"):
        assert f"  {name} " in scan_help.stdout
    assert gatewayd("scan", "acme-radio", env=acme).stdout == "ACME radio on channel 3\n"
    # Without the plugin, neither is there.
    assert "remote" not in gatewayd("pair", "--help").stdout
    assert gatewayd("pair", "remote").returncode == 2


def test_scan_modbus_finds_a_plugins_device_beside_the_piles_and_check_asks_it(
    tmp_path: Path, acme: dict[str, str], line: EbcThread
) -> None:
    scan = ["scan", "modbus", "--port", line.rtu_path, "--ids", "1-8"]
    found = gatewayd(*scan, "--json", env=acme)
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert [(r["unit"], r["kind"]) for r in rows] == [(2, "charger"), (5, "charger"), (7, "meter")]
    assert rows[2]["firmware"] == "2.0" and rows[0]["model"] == "ebc"
    # A silent id is asked once, not once per family on the line.
    asked = [unit for _, unit, _ in list(line.emu.trace)]
    assert {u: asked.count(u) for u in (1, 3, 4, 6, 8)} == {1: 1, 3: 1, 4: 1, 6: 1, 8: 1}

    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    added = gatewayd(*scan, "--add", "-c", str(site.config), env=acme)
    assert added.returncode == 0, added.stderr
    assert "✓ id 7: ACME meter, firmware 2.0" in added.stdout
    assert "✓ added pile-2, pile-5, meter-7 on bus rs485" in added.stdout
    written = tomllib.loads(site.config.read_text())["devices"]
    assert [(d["id"], d["kind"], d["bus"], d["unit"]) for d in written] == [
        ("pile-2", "charger", "rs485", 2),
        ("pile-5", "charger", "rs485", 5),
        ("meter-7", "meter", "rs485", 7),
    ]
    with site.config.open("a") as f:
        f.write('\n[[buses]]\nname = "radio"\ndriver = "acme-radio"\n')
        f.write('\n[[buses]]\nname = "quiet"\ndriver = "acme-quiet"\n')
    check = gatewayd("--lang", "en", "check", "--all", "-c", str(site.config), env=acme)
    out = check.stdout
    assert f"✓ rs485: serial port {line.rtu_path} present" in out, out
    assert "✓ pile-2 (unit 2): EBC pile, firmware" in out
    assert "✓ meter-7 (unit 7): ACME meter, firmware 2.0" in out
    assert "✓ radio: ACME radio on channel 3 answers" in out
    assert "· quiet: driver acme-quiet: no check known" in out


CLASH = '''
from gatewayd.family import Family


class ClashFamily(Family):
    kind = "clash"
    title = "clashing device"
    buses = ("serial",)
    commands = {"pair": {"smoke": "clash_plugin:nothing"}}
'''


def test_two_plugins_declaring_one_command_are_named_in_one_line(tmp_path: Path) -> None:
    env = install_plugin(tmp_path / "plugins", "clash_plugin", CLASH, {}, {"clash": "ClashFamily"})
    line = one_clear_line(gatewayd("pair", "smoke", "--help", env=env))
    assert line == (
        "✗ `gatewayd pair smoke` is declared twice: by device family clash and by device "
        "family smoke"
    )
    # The other groups are untouched by it.
    assert gatewayd("scan", "--help", env=env).returncode == 0
