"""`gatewayd events`: what happened lately (--since, by device and type) and what happens
next, across a restart of the daemon; the real daemon, a real broker, the smoke receiver
emulated on a pty."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import (
    DETECTOR,
    ControlDaemon,
    EmulatorThread,
    gatewayd,
    one_clear_line,
    press_test_until_done,
)
from tests.harness import REPO, Broker, make_site, smoke_config, wait_until


@pytest.fixture
def daemon(tmp_path: Path, broker: Broker, smoke_receiver: EmulatorThread) -> Iterator[ControlDaemon]:
    site = make_site(tmp_path, broker.url, smoke_config(smoke_receiver.rx.path, {"smoke-301": DETECTOR}))
    d = ControlDaemon(site)
    d.start()
    yield d
    if d.alive:
        d.stop()


def history(cfg: str, *args: str) -> list[dict]:
    out = gatewayd("events", "-c", cfg, "--no-follow", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_since_shows_what_happened_by_device_and_type(
    daemon: ControlDaemon, smoke_receiver: EmulatorThread
) -> None:
    cfg = str(daemon.site.config)
    det = smoke_receiver.rx.detector(DETECTOR)
    smoke_receiver.call(det.test(passed=True))
    smoke_receiver.call(det.low_battery(2600))
    wait_until(
        lambda: {"smoke.test", "smoke.low_battery"} <= {e["type"] for e in history(cfg, "--since", "1h")},
        10, "both events in the daemon's history",
    )  # fmt: skip
    smoke = history(cfg, "--since", "1h", "--type", "smoke.test")
    assert [e["type"] for e in smoke] == ["smoke.test"]
    assert smoke[0]["device"] == "smoke-301" and smoke[0]["data"]["result"] == "pass"
    assert {e["type"] for e in history(cfg, "--since", "1h", "--type", "smoke.*")} >= {
        "smoke.test", "smoke.low_battery",
    }  # fmt: skip
    assert history(cfg, "--since", "1h", "--device", "smoke-999") == []
    assert history(cfg, "--since", "1h", "--device", "smoke-301", "--type", "door.*") == []
    text = gatewayd("events", "-c", cfg, "--no-follow", "--since", "1h", "--type", "smoke.test")
    assert "info     smoke-301: smoke.test (address=1A2B3C4D" in text.stdout
    assert "result=pass" in text.stdout
    bad = one_clear_line(gatewayd("--lang", "en", "events", "-c", cfg, "--since", "yesterday"))
    assert "--since 'yesterday': expected 90s, 30m, 1h, 2d" in bad


def test_follow_goes_on_across_a_daemon_restart(
    daemon: ControlDaemon, smoke_receiver: EmulatorThread
) -> None:
    cfg = str(daemon.site.config)
    det = smoke_receiver.rx.detector(DETECTOR)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "--lang", "en", "events", "--follow", "--json",
         "--type", "smoke.test", "--count", "2", "-c", cfg],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if _press_until_read(smoke_receiver, det, proc) else ""
        assert json.loads(first)["type"] == "smoke.test"
        assert daemon.stop() == 0  # an upgrade, a reload gone wrong, systemd's watchdog
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read()  # still waiting, not exited
        daemon.start()
    except BaseException:
        proc.kill()
        proc.wait(5)
        raise
    out, err = press_test_until_done(proc, smoke_receiver, passed=False, timeout=20)
    assert proc.returncode == 0, err
    second = json.loads(out.splitlines()[0])
    assert second["type"] == "smoke.test" and second["data"]["result"] == "fail"
    assert "the daemon stopped; waiting for it to come back" in err
    assert "the daemon is back; following again" in err


def _press_until_read(smoke_receiver: EmulatorThread, det: object, proc: subprocess.Popen) -> bool:
    """Press the detector's test button until `events` (subscribing meanwhile) prints."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        smoke_receiver.call(det.test(passed=True))  # type: ignore[attr-defined]
        if sel.select(0.3):
            return True
    return False
