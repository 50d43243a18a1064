"""`gatewayd pair smoke` lists emulated detectors as they join and adds those given a room:
straight on the receiver's port when no daemon runs, through the control socket when one
does (the daemon holds the port) — and the daemon then watches the new detector."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import config
from tests.cli_support import DETECTOR, ControlDaemon, EmulatorThread, gatewayd, one_clear_line
from tests.harness import REPO, Broker, Site, make_site, wait_until

PAIR = 0x81


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    emu.do(emu.rx.detector, DETECTOR)
    yield emu
    emu.close()


def site_with_receiver(tmp_path: Path, broker_url: str, receiver: EmulatorThread) -> Site:
    body = (
        f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{receiver.rx.path}"\nping_seconds = 0.5\n\n'
        f'# the hallway\n[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "{DETECTOR}"\nroom = "301"\n'
    )
    return make_site(tmp_path, broker_url, body)


def pair_while_joining(
    site: Site, receiver: EmulatorThread, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `gatewayd pair smoke`; once the receiver got PAIR, three detectors press their button."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "pair", "smoke", "--seconds", "3", "-c", str(site.config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        receiver.call(receiver.rx.wait_host_frame(PAIR, timeout=15))
        for address, model in (("1A2B3C4E", 0x11), ("1A2B3C4F", 0x01), (DETECTOR, 0x01)):
            receiver.do(receiver.rx.queue_join, address, model)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_pair_direct_lists_joins_and_adds_the_ones_with_a_room(
    tmp_path: Path, receiver: EmulatorThread
) -> None:
    site = site_with_receiver(tmp_path, "mqtt://127.0.0.1:9", receiver)
    result = pair_while_joining(site, receiver, "--room", "1A2B3C4E=302")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pair mode for 3 s on smoke-rx" in out
    assert "✓ detector 1A2B3C4E joined (model SD-1L)\n  an SD-1L sends no heartbeat" in out
    assert "\n  added smoke-302 (room 302)" in out
    assert "✓ detector 1A2B3C4F joined (model SD-10)\n  not added; later: gatewayd device add" in out
    assert f"✓ detector {DETECTOR} joined: configured already as smoke-301" in out
    assert "3 detectors joined, 1 added" in out
    cfg = config.load(str(site.config))
    assert [
        (d.id, d.settings["address"], d.settings["room"], d.settings["model"]) for d in cfg.devices
    ] == [("smoke-301", DETECTOR, "301", None), ("smoke-302", "1A2B3C4E", "302", "SD-1L")]
    assert "# the hallway" in site.config.read_text()


def test_pair_through_the_running_daemon(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread
) -> None:
    site = site_with_receiver(tmp_path, broker.url, receiver)
    daemon = ControlDaemon(site)
    daemon.start()
    try:
        wait_until(
            lambda: "receiver on" in daemon.output() and "answers" in daemon.output(),
            10,
            "the receiver online",
        )
        result = pair_while_joining(site, receiver, "--room", "1A2B3C4F=303", "--json")
        assert result.returncode == 0, result.stderr
        joined = {j["address"]: j["device"] for j in json.loads(result.stdout)}
        assert joined == {"1A2B3C4E": None, "1A2B3C4F": "smoke-303", DETECTOR: "smoke-301"}

        def watched() -> bool:
            st = json.loads(gatewayd("status", "-c", str(site.config), "--json").stdout)
            return "smoke-303" in [d["id"] for d in st["devices"]]

        wait_until(watched, 10, "the daemon to watch smoke-303 after its reload")
        det = receiver.rx.detector("1A2B3C4F")

        def heard() -> bool:
            # The reload reopened the port: heartbeats sent meanwhile are lost, so send again.
            receiver.call(det.heartbeat(battery_mv=3100))
            st = json.loads(gatewayd("status", "-c", str(site.config), "--json").stdout)
            return any(
                d["id"] == "smoke-303" and d["state"].get("battery_mv") == 3100
                for d in st["devices"]
            )

        wait_until(heard, 15, "the new detector's heartbeat in the daemon")
    finally:
        daemon.stop()


def test_pair_refusals(tmp_path: Path) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9")
    line = one_clear_line(gatewayd("pair", "smoke", "-c", str(site.config)))
    assert "0 serial buses" in line and "gatewayd scan serial --add" in line
    line = one_clear_line(gatewayd("pair", "smoke", "--room", "301", "-c", str(site.config)))
    assert "expected ADDRESS=ROOM like 1A2B3C4D=301" in line
    bad = gatewayd("pair", "smoke", "--seconds", "999", "-c", str(site.config))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "1<=x<=255" in bad.stderr
