"""`gatewayd install-service --dry-run` prints what a real run does: the unit pointed at this
installation and config, the service user with its groups, the data directory, ownership of
the secrets; and the unit it would write passes systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import gatewayd, one_clear_line
from tests.harness import REPO, make_site


def test_dry_run_prints_the_unit_and_the_commands(tmp_path: Path) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    result = gatewayd("install-service", "--dry-run", "-c", str(site.config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    unit = out.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert "ExecStart=" in unit and f" run -c {site.config}" in unit
    assert f"ReadWritePaths={tmp_path / 'data'}" in unit and "User=gatewayd" in unit
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    commands = out.split("\nEOF\n", 1)[1].splitlines()
    assert f"install -d -m 0750 -o gatewayd -g gatewayd {tmp_path / 'data'}" in commands
    assert f"chown gatewayd:gatewayd {tmp_path / 'command.key'}" in commands
    assert f"chmod 0640 {site.config}" in commands
    assert commands[-2:] == ["systemctl daemon-reload", "systemctl enable --now gatewayd.service"]
    assert any(c.startswith(("useradd --system", "usermod --append")) for c in commands)
    no_start = gatewayd("install-service", "--dry-run", "--no-start", "-c", str(site.config)).stdout
    assert no_start.rstrip().endswith("systemctl daemon-reload")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    (tmp_path / "gatewayd.service").write_text(unit + "\n")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "gatewayd.service")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_without_a_config_it_says_what_to_do_first(tmp_path: Path) -> None:
    line = one_clear_line(
        gatewayd("install-service", "--dry-run", "-c", str(tmp_path / "none.toml"))
    )
    assert "no such file; write it first: gatewayd init" in line


def _unit_of(dry_run: str) -> str:
    return dry_run.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]


def test_the_unit_names_only_groups_that_exist_here(tmp_path: Path) -> None:
    """A SupplementaryGroups= naming a group that does not exist (bluetooth without bluez)
    keeps systemd from starting the unit at all."""
    import grp

    from gatewayd.cli.install import GROUPS, render_unit

    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    unit = _unit_of(gatewayd("install-service", "--dry-run", "-c", str(site.config)).stdout)
    existing = []
    for name in GROUPS:
        try:
            grp.getgrnam(name)
            existing.append(name)
        except KeyError:
            continue
    lines = [ln for ln in unit.splitlines() if ln.startswith("SupplementaryGroups=")]
    assert lines == ([f"SupplementaryGroups={' '.join(existing)}"] if existing else [])
    shipped = (REPO / "systemd" / "gatewayd.service").read_text()
    none = render_unit(shipped, "/usr/bin/gatewayd", "/etc/g.toml", "/var/lib/g", "gw", [])
    assert "SupplementaryGroups" not in none
    one = render_unit(shipped, "/usr/bin/gatewayd", "/etc/g.toml", "/var/lib/g", "gw", ["dialout"])
    assert "\nSupplementaryGroups=dialout\n" in one


def test_the_unit_admits_every_serial_line_a_pi_has() -> None:
    """USB adapters (ttyUSB, ttyACM) and the Pi's own UARTs an RS-485 HAT sits on:
    /dev/serial0 is ttyAMA0, or ttyS0 (the mini UART) on a Pi whose PL011 serves Bluetooth."""
    unit = (REPO / "systemd" / "gatewayd.service").read_text()
    allowed = {ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("DeviceAllow=")}
    assert allowed == {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw", "char-ttyS rw"}
    assert "\nDevicePolicy=closed\n" in unit
    # systemd resolves char-NAME through /proc/devices: NAME must be a driver's name there.
    known = set(Path("/proc/devices").read_text().split())
    assert "ttyS" in known  # the 8250 driver every Linux (and the Pi's mini UART) has
