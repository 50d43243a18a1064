"""`make demo` plays its whole scenario against every emulator and a real broker."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DemoRun
from tests.harness import REPO

# Each step's header (as the demo prints it) and what a person watching must see after it.
STORY = [
    ("signed unlock", ["door.unlocked", "user=tenant-302", "door.locked"]),
    ("battery on pile-1 port 2 is full", ["charger.port_full", "charger.port_cut"]),
    ("FIRE MODE", ["gateway.fire_mode", "FIRE MODE", "sound_all=sounding", "charger.port_cut"]),
    ("confirms the fire", ["gateway.fire_confirmed", "door.released"]),
    ("both refused", ["forbidden"]),
    ("resets fire mode", ["gateway.fire_reset", "door.restored"]),
    (
        "monthly fire drill",
        [
            "DRILL",
            "gateway.drill",
            "gateway.fire_mode",
            "gateway.fire_confirmed",
            "[DRILL]",
            "drill alarm: would",
            "pile-3 all_off",
            "drill confirmed: would door-main hold_open",
        ],
    ),
    ("forged command", ["bad_signature"]),
    ("heats it to 66", ["port_on", "charger.overheat"]),
    ("overheat alarm stays on the list", ["reset_alarm", "gateway.alarm_reset", "active: none"]),
    ("leakage current creeps up", ["electrical.leakage_alarm"]),
    ("electrician dries out", ["electrical.alarm_over", "gateway.alarm_reset", "active: none"]),
    ("taps 'open' on the relay's phone page", ["门已打开 (ok)", "user=li.wei"]),
    ("Demo scenario done.", ["status    online=False"]),
]


def test_demo_scenario_plays_through(demo_run: DemoRun) -> None:
    out = demo_run.out
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    at = 0
    for header, outcomes in STORY:
        at = text.find(header, at)
        assert at >= 0, f"step {header!r} missing or out of order"
        for outcome in outcomes:
            assert text.find(outcome, at) >= 0, f"after {header!r}: {outcome!r} never shown"
    assert "Traceback" not in out.stderr + (demo_run.dir / "gatewayd.log").read_text()


def test_the_fire_scene_keeps_the_doors_locked_until_confirmed_and_the_drill_says_drill(
    demo_run: DemoRun,
) -> None:
    text = demo_run.out.stdout
    fire = text.index("Smoke in room 301")
    confirm = text.index("confirms the fire", fire)
    assert "door.released" not in text[fire:confirm]  # one alarm: cut and sound, doors locked
    messages = [json.loads(ln) for ln in demo_run.record.read_text(encoding="utf-8").splitlines()]
    bodies = [(m["topic"], json.loads(m["payload"])) for m in messages if m.get("payload")]
    drill = [i for i, (t, b) in enumerate(bodies)
             if t.endswith("/events/xz-liushu-017") and b.get("type") == "gateway.drill"]  # fmt: skip
    assert len(drill) == 5  # started, alarm, confirmed, reset, finished
    during = bodies[drill[0] : drill[-1] + 1]
    events = [b for t, b in during if "/events/" in t]
    assert {b["type"] for b in events} >= {"smoke.alarm", "gateway.fire_mode",
                                           "gateway.fire_confirmed", "gateway.fire_reset"}  # fmt: skip
    assert all(b["data"].get("drill") is True for b in events)
    assert not [b for t, b in during if t.endswith("/status") and b.get("fire_mode")]
    assert not [t for t, b in during if t.endswith("/alarms")]  # the list never shows a drill


def test_the_view_shows_what_changed_in_words_and_units(demo_run: DemoRun) -> None:
    out = demo_run.out
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert not [ln for ln in lines if "None" in ln], "a None shown to people"
    assert not [ln for ln in lines if re.search(r"\b1\d{9}(\.\d+)?\b", ln)], "a raw epoch"
    states: dict[str, list[str]] = {}
    for ln in lines:
        if "  state     " in ln:
            device, _, text = ln.split("  state     ", 1)[1].partition(" ")
            states.setdefault(device, []).append(text.strip())
    for device, texts in states.items():
        again = [a for a, b in itertools.pairwise(texts) if a == b]
        assert not again, f"{device}: an unchanged state shown again: {again[0]}"
    # The figure that moves in the overheat story: pile-2's port 3 temperature, in °C.
    assert any(re.search(r"ports °C .*3:6\d\.\d", t) for t in states["pile-2"]), states["pile-2"]
    assert any("battery_mv=13400 mV" in t for t in states["door-main"])
    # Each command's result before the end is announced.
    done = out.stdout.index("Demo scenario done.")
    assert out.stdout.count("result    ←") == out.stdout[:done].count("result    ←")


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    """As a terminal's Ctrl-C does: SIGINT to the whole foreground process group."""
    work = tmp_path / "demo"
    with open(tmp_path / "out.txt", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo", "--pace", "0.1", "--dir", str(work)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "the house keeps running" not in (tmp_path / "out.txt").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, (
                tmp_path / "out.txt"
            ).read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert "stopped." in (tmp_path / "out.txt").read_text()
    log = (work / "gatewayd.log").read_text()
    assert "stopped" in log.splitlines()[-1]
    for bad in (" ERROR ", "Traceback", "Broken pipe", "connection lost", "Connection reset"):
        assert bad not in log, f"{bad!r} in the gateway's log of a clean shutdown:\n{log[-2000:]}"


def test_make_demo_installs_only_what_the_demo_uses() -> None:
    """The demo runs a broker and a private D-Bus: no Prometheus, no systemd, no tmux."""
    listed = subprocess.run(
        ["bash", "scripts/debian-deps.sh", "--list", "demo"],
        capture_output=True, text=True, cwd=REPO, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    assert listed == ["mosquitto", "dbus-daemon"]
    plan = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "demo"],
        capture_output=True, text=True, cwd=REPO, timeout=10, check=True,
    ).stdout  # fmt: skip
    assert "scripts/debian-deps.sh demo" in plan
    assert "debian-deps.sh test" not in plan
    tests = subprocess.run(
        ["bash", "scripts/debian-deps.sh", "--list", "test"],
        capture_output=True, text=True, cwd=REPO, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    assert {"prometheus", "systemd", "tmux"} <= set(tests)
