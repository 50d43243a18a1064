"""`gatewayd check` refuses what would fail or mislead later (a baud rate of 9601, a metrics
port over 65535, a typo in the fire linkage, a data directory that cannot exist), checks the
files the service user must read and own, and says when Bluetooth runs on dbus-fast's slow
pure-Python fallback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.secrets import write_secret
from tests.cli_support import gatewayd, one_clear_line
from tests.harness import REPO, make_site

NOBODY = pwd.getpwnam("nobody")


def site_with(tmp_path: Path, body: str) -> Path:
    return make_site(tmp_path, "mqtt://127.0.0.1:9", body).config


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            '[[buses]]\nname = "rs485"\ndriver = "modbus"\nport = "/dev/ttyUSB0"\nbaudrate = 9601\n',
            "buses[0].baudrate: expected a standard baud rate: 1200, 2400, 4800, 9600, 19200",
        ),
        (
            '[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "/dev/ttyUSB1"\nbaudrate = 9601\n',
            "buses[0].baudrate: expected a standard baud rate: 1200, 2400",
        ),
        (
            '[metrics]\nlisten = "127.0.0.1:70000"\n',
            'metrics.listen: expected host:port with a port 0..65535, or empty to disable, got "127.0.0.1:70000"',
        ),
        (
            '[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "/dev/ttyUSB1"\n\n'
            '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "1A2B3C4D"\n\n'
            '[rules.fire]\ncut_chargers_on = ["smoke-3O1"]\n',
            "rules.fire.cut_chargers_on: no device 'smoke-3O1' in this config (devices: smoke-301)",
        ),
    ],
    ids=["modbus-baud", "serial-baud", "metrics-port", "fire-typo"],
)
def test_check_refuses_what_would_fail_or_mislead_later(
    tmp_path: Path, body: str, says: str
) -> None:
    cfg = site_with(tmp_path, body)
    result = gatewayd("--lang", "en", "check", "-c", str(cfg))
    assert result.returncode == 2
    assert says in one_clear_line(result)


def test_a_metrics_port_over_65535_is_refused_by_the_daemon_in_one_line(tmp_path: Path) -> None:
    cfg = site_with(tmp_path, '[metrics]\nlisten = "127.0.0.1:70000"\n')
    run = gatewayd("run", "-c", str(cfg), timeout=20)
    assert run.returncode == 2
    assert "ExceptionGroup" not in run.stderr and "Traceback" not in run.stderr
    assert "metrics.listen" in run.stderr


def test_a_data_dir_that_cannot_be_created_is_a_failed_check(tmp_path: Path) -> None:
    cfg = site_with(tmp_path, "")
    cfg.write_text(cfg.read_text().replace(f'data_dir = "{tmp_path / "data"}"', 'data_dir = "/proc/gatewayd-data"'))
    result = gatewayd("--lang", "en", "check", "-c", str(cfg))
    assert result.returncode == 1
    assert "✗ data dir /proc/gatewayd-data: cannot be created (/proc: " in result.stdout
    (tmp_path / "afile").write_text("")
    cfg.write_text(cfg.read_text().replace("/proc/gatewayd-data", f"{tmp_path}/afile/a/data"))
    result = gatewayd("--lang", "en", "check", "-c", str(cfg))
    assert f"cannot be created ({tmp_path}/afile is not a directory)" in result.stdout


def test_tls_keys_and_the_metrics_password_are_checked_like_every_secret(tmp_path: Path) -> None:
    for name in ("client.key", "metrics.key", "metrics.password"):
        write_secret(str(tmp_path / name), "x")
    for name in ("ca.pem", "client.pem", "metrics.pem"):
        (tmp_path / name).write_text("cert")
        (tmp_path / name).chmod(0o644)
    cfg = make_site(
        tmp_path,
        "mqtts://127.0.0.1:9",
        f'[metrics]\nusername = "prometheus"\npassword_file = "{tmp_path}/metrics.password"\n'
        f'cert_file = "{tmp_path}/metrics.pem"\nkey_file = "{tmp_path}/metrics.key"\n',
    ).config
    cfg.write_text(
        cfg.read_text().replace(
            "reconnect_max_seconds = 1.0\n",
            f'reconnect_max_seconds = 1.0\nca_file = "{tmp_path}/ca.pem"\n'
            f'cert_file = "{tmp_path}/client.pem"\nkey_file = "{tmp_path}/client.key"\n',
        )
    )
    assert gatewayd("check", "-c", str(cfg)).returncode == 0
    (tmp_path / "client.key").chmod(0o644)
    loose = gatewayd("--lang", "en", "check", "-c", str(cfg))
    assert loose.returncode == 1
    assert (
        f"✗ {tmp_path}/client.key: a private key readable by group or others (mode 0644); "
        f"fix: chmod 600 {tmp_path}/client.key"
    ) in loose.stdout
    (tmp_path / "client.key").chmod(0o600)
    # As the service user will meet them: each secret and key must be its own.
    as_service = gatewayd("--lang", "en", "check", "-c", str(cfg), "--user", "nobody")
    for name in ("metrics.password", "metrics.key", "client.key", "command.key"):
        assert f"✗ {tmp_path}/{name}: owned by root, the service user nobody cannot read it" in as_service.stdout
    (tmp_path / "ca.pem").chmod(0o600)
    as_service = gatewayd("--lang", "en", "check", "-c", str(cfg), "--user", "nobody")
    assert f"✗ {tmp_path}/ca.pem: the service user nobody cannot read it; fix: chmod 644" in as_service.stdout
    # install-service hands every one of them to the service user.
    plan = gatewayd("install-service", "--dry-run", "-c", str(cfg)).stdout.splitlines()
    [chown] = [c for c in plan if c.startswith("chown gatewayd:gatewayd ")]
    for name in ("metrics.password", "metrics.key", "client.key", "command.key"):
        assert f"{tmp_path}/{name}" in chown.split()


def test_files_a_root_run_left_in_the_data_dir_are_named_with_the_fix(tmp_path: Path) -> None:
    """`sudo gatewayd run` once, then the service user: check says what to chown, and
    install-service owns the whole tree."""
    cfg = site_with(tmp_path, "")
    data = tmp_path / "data"
    (data / "outbox").mkdir(parents=True)
    (data / "outbox" / "seg-1").write_text("")
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    for tree in (tmp_path, tmp_path.parent):
        tree.chmod(0o755)
    result = gatewayd("--lang", "en", "check", "-c", str(cfg), "--user", "nobody")
    assert result.returncode == 1
    assert (
        f"✗ data dir {data}: 2 file(s) not owned by nobody (e.g. {data}/outbox), the service "
        f"cannot write them; fix: chown -R nobody: {data}"
    ) in result.stdout
    plan = gatewayd("install-service", "--dry-run", "-c", str(cfg)).stdout.splitlines()
    assert f"chown -R gatewayd:gatewayd {data}" in plan
    os.chown(data / "outbox", NOBODY.pw_uid, NOBODY.pw_gid)
    os.chown(data / "outbox" / "seg-1", NOBODY.pw_uid, NOBODY.pw_gid)
    fixed = gatewayd("--lang", "en", "check", "-c", str(cfg), "--user", "nobody")
    assert f"✓ data dir {data}: writable" in fixed.stdout


BLE = '[[buses]]\nname = "ble"\ndriver = "ble"\n'


def test_check_says_when_bluetooth_runs_on_the_slow_pure_python_fallback(tmp_path: Path) -> None:
    import dbus_fast

    cfg = site_with(tmp_path, BLE)
    fast = gatewayd("--lang", "en", "check", "-c", str(cfg))
    assert "✓ Bluetooth: dbus-fast runs compiled" in fast.stdout, fast.stdout
    # dbus-fast as pip leaves it on 32-bit Raspberry Pi OS without a compiler: .py only.
    slow = tmp_path / "slow"
    shutil.copytree(
        Path(dbus_fast.__file__).parent, slow / "dbus_fast",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--lang", "en", "check", "-c", str(cfg)],
        capture_output=True, text=True, cwd=REPO, timeout=30,
        env={**os.environ, "PYTHONPATH": f"{slow}{os.pathsep}{REPO}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr  # slow, but it works
    assert "· Bluetooth: dbus-fast runs without its compiled part (the slow pure-Python fallback)" in result.stdout
    assert "build-essential python3-dev" in result.stdout
    (tmp_path / "b").mkdir()
    no_ble = gatewayd("--lang", "en", "check", "-c", str(site_with(tmp_path / "b", "")))
    assert "dbus-fast" not in no_ble.stdout
