"""`make demo` plays its whole scenario against every emulator and a real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import REPO


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
    # What a person watching should see, in story order.
    story = [
        "door.unlocked",
        "charger.port_full",
        "charger.overheat",
        "gateway.fire_mode",
        "door.released",
        "forbidden",
        "gateway.fire_reset",
        "door.restored",
        "bad_signature",
        "status    online=False",
    ]
    positions = [text.find(word) for word in story]
    assert all(p >= 0 for p in positions), dict(zip(story, positions, strict=True))
    assert positions == sorted(positions)
    assert "user=tenant-302" in text
    assert "Traceback" not in out.stderr + (tmp_path / "demo" / "gatewayd.log").read_text()
