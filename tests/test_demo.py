"""`make demo` plays its whole scenario against every emulator and a real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import REPO

# Each step's header (as the demo prints it) and what a person watching must see after it.
STORY = [
    ("signed unlock", ["door.unlocked", "user=tenant-302", "door.locked"]),
    ("battery on pile-1 port 2 is full", ["charger.port_full", "charger.port_cut"]),
    ("heats pile-2 port 3", ["charger.overheat"]),
    ("FIRE MODE", ["gateway.fire_mode", "door.released", "FIRE MODE"]),
    ("both refused", ["forbidden"]),
    ("resets fire mode", ["gateway.fire_reset", "door.restored"]),
    ("forged command", ["bad_signature"]),
    ("taps 'open' on the relay's phone page", ["门已打开 (ok)", "user=li.wei", "status    online=False"]),
]


def test_demo_scenario_plays_through(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "demo", "--once", "--pace", "0.1", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    at = 0
    for header, outcomes in STORY:
        at = text.find(header, at)
        assert at >= 0, f"step {header!r} missing or out of order"
        for outcome in outcomes:
            assert text.find(outcome, at) >= 0, f"after {header!r}: {outcome!r} never shown"
    assert "Traceback" not in out.stderr + (tmp_path / "demo" / "gatewayd.log").read_text()
