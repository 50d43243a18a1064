"""Relative paths in gateway.toml are taken from the config file's folder, wherever the daemon
or the CLI is started from (systemd starts it in /, an installer types from anywhere); paths
typed on the command line are the shell's and are written whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gatewayd import config
from gatewayd.secrets import write_secret
from tests.cli_support import ControlDaemon, gatewayd
from tests.harness import REPO, Broker, Site

KEY = "00" * 32


def relative_site(folder: Path, broker_url: str) -> Path:
    folder.mkdir(parents=True)
    write_secret(str(folder / "command.key"), KEY)
    (folder / "keys").mkdir()
    write_secret(str(folder / "keys" / "door.key"), "11" * 16)
    cfg = folder / "gateway.toml"
    cfg.write_text(
        '[gateway]\nid = "gw-rel"\nsite = "17"\ndata_dir = "data"\n\n'
        f'[mqtt]\nurl = "{broker_url}"\nreconnect_max_seconds = 1.0\n\n'
        '[security]\ncommand_key_file = "command.key"\n\n[metrics]\nlisten = ""\n\n'
        '[[buses]]\nname = "ble"\ndriver = "ble"\n\n'
        '[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\n'
        'address = "C0:FF:EE:00:00:01"\nkey_file = "keys/door.key"\n'
    )
    return cfg


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    cfg = relative_site(tmp_path / "etc", "mqtt://127.0.0.1:9")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here = os.getcwd()
    os.chdir(elsewhere)
    try:
        loaded = config.load(str(cfg))
    finally:
        os.chdir(here)
    assert loaded.data_dir == str(tmp_path / "etc" / "data")
    assert loaded.command_key is not None
    assert loaded.command_key.path == str(tmp_path / "etc" / "command.key")
    assert loaded.devices[0].settings["key_file"].path == str(tmp_path / "etc/keys/door.key")
    # The CLI, run from another folder: the secrets are found, not "no such file".
    check = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--lang", "en", "check", "-c", str(cfg)],
        capture_output=True, text=True, cwd=elsewhere, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"data dir {tmp_path / 'etc' / 'data'}" in check.stdout


def test_the_daemon_keeps_its_data_beside_the_config_and_status_finds_it(
    tmp_path: Path, broker: Broker
) -> None:
    cfg = relative_site(tmp_path / "etc", broker.url)
    cfg.write_text(cfg.read_text().split("[[buses]]")[0])  # no lock: no Bluetooth needed here
    daemon = ControlDaemon(Site(tmp_path, "gw-rel", bytes(32), cfg))  # started in the repo
    daemon.log = tmp_path / "gatewayd.log"
    daemon.start()
    try:
        assert (tmp_path / "etc" / "data").is_dir()
        assert not (REPO / "data").exists()
        status = gatewayd("status", "-c", str(cfg), "--json")
        assert status.returncode == 0, status.stderr
    finally:
        daemon.stop()


def test_paths_typed_on_the_command_line_are_written_whole(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "gateway.toml"
    work = tmp_path / "work"
    work.mkdir()
    write_secret(str(work / "pw"), "secret")
    made = subprocess.run(
        [sys.executable, "-m", "gatewayd", "init", "-c", str(cfg), "--gateway-id", "gw1",
         "--site", "17", "--broker", "mqtt://x", "--username", "gw1", "--password-file", "pw",
         "--data-dir", "state"],
        capture_output=True, text=True, cwd=work, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    loaded = config.load(str(cfg))
    assert loaded.data_dir == str(work / "state")
    assert loaded.mqtt.password is not None and loaded.mqtt.password.path == str(work / "pw")
