"""`gatewayd status`, `events` and `alarm` against the real daemon (a subprocess, with a real
broker and an emulated smoke receiver on a pty), through the control socket, as an installer
on site would use them."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import control
from tests.cli_support import (
    DETECTOR,
    ControlDaemon,
    EmulatorThread,
    gatewayd,
    one_clear_line,
    press_test_until_done,
)
from tests.harness import REPO, Broker, Daemon, Site, make_site, smoke_config, wait_until

ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    yield emu
    emu.close()


def smoke_site(tmp_path: Path, broker: Broker, receiver: EmulatorThread) -> Site:
    return make_site(tmp_path, broker.url, smoke_config(receiver.rx.path, {"smoke-301": DETECTOR}))


@pytest.fixture
def daemon(tmp_path: Path, broker: Broker, receiver: EmulatorThread) -> Iterator[ControlDaemon]:
    d = ControlDaemon(smoke_site(tmp_path, broker, receiver))
    d.start()
    yield d
    if d.alive:
        d.stop()


def test_status_shows_broker_buses_and_each_device(
    daemon: ControlDaemon, receiver: EmulatorThread
) -> None:
    cfg = str(daemon.site.config)
    receiver.call(receiver.rx.detector(DETECTOR).heartbeat(battery_mv=2950))

    def reported() -> dict | None:
        st = json.loads(gatewayd("status", "-c", cfg, "--json").stdout)
        dev = st["devices"][0]
        return st if st["broker_connected"] and dev["state"].get("battery_mv") == 2950 else None

    st = wait_until(reported, 10, "the heartbeat in the daemon's status")
    assert st["gateway"] == "gw-test" and st["site"] == "柳墅村 17号"
    assert st["buses"]["smoke-rx"] == {"driver": "serial", "running": True, "restarts": 0}
    assert st["gateway_state"]["receiver.smoke-rx"]["online"] is True
    text = gatewayd("status", "-c", cfg)
    assert text.returncode == 0
    assert "gateway gw-test (柳墅村 17号)" in text.stdout and "broker connected" in text.stdout
    assert "✓ bus smoke-rx (serial)" in text.stdout
    assert re.search(r"^  smoke-301  smoke  last seen \d+ s ago$", text.stdout, re.M), text.stdout
    assert "      address 1A2B3C4D  battery_mv 2950 mV  rssi_dbm -60 dBm" in text.stdout


def test_events_follow_prints_what_happens(daemon: ControlDaemon, receiver: EmulatorThread) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "events", "--follow", "--device", "smoke-301", "--count", "1", "-c", str(daemon.site.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    out, err = press_test_until_done(proc, receiver, passed=True)
    assert proc.returncode == 0, err
    assert "info     smoke-301: smoke.test (" in out and "result=pass" in out


def test_alarm_list_ack_and_reset(daemon: ControlDaemon, receiver: EmulatorThread) -> None:
    cfg = str(daemon.site.config)
    receiver.call(receiver.rx.detector(DETECTOR).alarm(120))

    def listed() -> dict | None:
        body = json.loads(gatewayd("alarm", "list", "-c", cfg, "--json").stdout)
        return body if any(a["id"] == "smoke-301/smoke.alarm" for a in body["alarms"]) else None

    body = wait_until(listed, 10, "the smoke alarm in `gatewayd alarm list`")
    alarm = next(a for a in body["alarms"] if a["id"] == "smoke-301/smoke.alarm")
    assert (alarm["severity"], alarm["acked_by"]) == ("critical", None)
    text = gatewayd("alarm", "list", "-c", cfg).stdout
    assert "critical smoke-301/smoke.alarm  since" in text
    # Recorded as who runs the command (the daemon asks the kernel); the name is a note.
    acked = gatewayd("alarm", "ack", "smoke-301/smoke.alarm", "--note", "installer-li", "-c", cfg)
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout == f"✓ smoke-301/smoke.alarm acknowledged by {ME} (note: installer-li)\n"
    again = json.loads(gatewayd("alarm", "list", "-c", cfg, "--json").stdout)["alarms"]
    assert next(a for a in again if a["id"] == "smoke-301/smoke.alarm")["acked_by"] == ME
    unknown = gatewayd("alarm", "ack", "pile-9/charger.fire", "-c", cfg)
    assert unknown.returncode == 3
    assert one_clear_line(unknown) == "✗ no active alarm 'pile-9/charger.fire'"
    # Any smoke alarm puts the house in fire mode (rules.fire); only a person leaves it, and
    # not while a detector still reports smoke.
    assert body["fire_mode"] is True and "FIRE MODE" in text
    early = gatewayd("alarm", "reset", "--note", "installer-li", "-c", cfg)
    assert early.returncode == 1
    assert "smoke-301" in one_clear_line(early) and "still" in one_clear_line(early)
    receiver.call(receiver.rx.detector(DETECTOR).clear())
    wait_until(
        lambda: (
            "smoke-301/smoke.alarm"
            not in [
                a["id"]
                for a in json.loads(gatewayd("alarm", "list", "-c", cfg, "--json").stdout)["alarms"]
            ]
        ),
        10,
        "the detector's clear",
    )
    reset = gatewayd("alarm", "reset", "--note", "installer-li", "-c", cfg)
    assert reset.returncode == 0 and reset.stdout == f"✓ fire mode reset by {ME}\n"
    after = json.loads(gatewayd("alarm", "list", "-c", cfg, "--json").stdout)
    assert after["fire_mode"] is False
    assert all(a["type"] != "gateway.fire_mode" for a in after["alarms"])
    reset = gatewayd("alarm", "reset", "-c", cfg)
    assert reset.returncode == 0 and "not in fire mode" in reset.stdout


def test_no_daemon_is_one_line_and_exit_4(tmp_path: Path) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    for args in (["status"], ["alarm", "list"], ["events", "--follow"]):
        result = gatewayd(*args, "-c", str(site.config))
        assert result.returncode == 4
        line = one_clear_line(result)
        assert "the daemon is not running" in line and "control.sock" in line
    # A socket left behind by a killed daemon is the same: not running.
    (tmp_path / "data").mkdir(exist_ok=True)
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "data" / "control.sock"))
    stale.close()
    result = gatewayd("status", "-c", str(site.config))
    assert result.returncode == 4 and "the daemon is not running" in one_clear_line(result)


def test_real_gatewayd_run_serves_the_control_socket(tmp_path: Path, broker: Broker) -> None:
    """`gatewayd run` itself (not the test launcher) puts the socket at the documented path."""
    site = make_site(tmp_path, broker.url)
    d = Daemon(site)
    d.start()
    try:
        path = control.socket_path(str(tmp_path / "data"))
        wait_until(lambda: Path(path).exists(), 3, "the control socket")
        result = gatewayd("status", "-c", str(site.config), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["gateway"] == "gw-test"
    finally:
        assert d.stop() == 0
    assert not Path(path).exists()  # removed on a clean stop
