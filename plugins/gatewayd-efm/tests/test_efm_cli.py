"""The installer's CLI knows the EFM-4 with no core change: `scan modbus --add` finds it beside
the piles on one RS-485 line (input register 0 reads 0x4546), `check --all` asks it by its own
family, and `gatewayd test` reads it directly, a broken sensor shown as such (no value)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd_efm_stubs.efm4 import Efm4
from tests.cli_support import gatewayd
from tests.harness import make_site
from tests.test_cli_scan import EbcThread


@pytest.fixture
def line() -> Iterator[tuple[EbcThread, Efm4]]:
    emu = EbcThread([2, 5])
    efm = Efm4(unit=9)
    emu.emu.piles[9] = efm  # type: ignore[assignment]  # any slave rides the line
    yield emu, efm
    emu.close()


def test_scan_adds_the_detector_beside_the_piles_and_check_and_test_read_it(
    tmp_path: Path, line: tuple[EbcThread, Efm4]
) -> None:
    emu, efm = line
    scan = ["scan", "modbus", "--port", emu.rtu_path, "--ids", "1-10"]
    found = gatewayd(*scan, "--json")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert [(r["unit"], r["kind"]) for r in rows] == [
        (2, "charger"),
        (5, "charger"),
        (9, "electrical"),
    ]
    assert (rows[2]["model"], rows[2]["firmware"], rows[2]["channels"]) == ("efm4", "1.3", 4)

    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    added = gatewayd(*scan, "--add", "-c", str(site.config))
    assert added.returncode == 0, added.stderr
    assert "✓ id 9: EFM-4 electrical fire detector, firmware 1.3, 4 channels" in added.stdout
    assert "✓ added pile-2, pile-5, efm-9 on bus rs485" in added.stdout
    written = tomllib.loads(site.config.read_text())["devices"]
    assert (written[2]["id"], written[2]["kind"], written[2]["unit"]) == ("efm-9", "electrical", 9)

    check = gatewayd("--lang", "en", "check", "--all", "-c", str(site.config))
    assert (
        "✓ efm-9 (unit 9): EFM-4 electrical fire detector, firmware 1.3, 4 channels" in check.stdout
    )

    ok = gatewayd("test", "efm-9", "-c", str(site.config), "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    shown = json.loads(ok.stdout)
    assert (shown["ok"], shown["channel 1"], shown["breaker"]) == (
        True, "residual_current: normal, 12 mA", "not tripped")  # fmt: skip

    async def broken() -> None:
        efm.break_wire(1)

    emu.call(broken())
    bad = gatewayd("test", "efm-9", "-c", str(site.config), "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["channel 1"] == "residual_current: open_circuit, no reading"
    assert efm.coil_writes == []  # a test only reads
