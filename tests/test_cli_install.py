"""`gatewayd install-service --dry-run` prints what a real run does: the unit pointed at this
installation and config, the service user with its groups, the data directory, ownership of
the secrets; and the unit it would write passes systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import gatewayd, one_clear_line
from tests.harness import make_site


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
