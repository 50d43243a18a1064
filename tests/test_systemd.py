"""The daemon under a fake systemd: READY, then WATCHDOG while healthy, none while blocked."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import Daemon, Site, install_plugin, make_site

BLOCKER = '''
import asyncio, os, time
from gatewayd.driver import Driver
from gatewayd.schema import Float

class Blocker(Driver):
    """Blocks the event loop (time.sleep) once the file named by `flag` appears."""
    name = "blocker"
    bus_schema = {"seconds": Float(0, 60, default=3.0)}

    async def run(self) -> None:
        flag = os.environ["BLOCKER_FLAG"]
        while True:
            await asyncio.sleep(0.05)
            if os.path.exists(flag):
                os.unlink(flag)
                time.sleep(self.bus.settings["seconds"])
'''


def datagrams(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            break
    return out


def test_ready_then_watchdog_which_stops_while_loop_blocked(tmp_path: Path, broker) -> None:
    site: Site = make_site(
        tmp_path, broker.url, '[[buses]]\nname = "b"\ndriver = "blocker"\nseconds = 2.0\n'
    )
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    flag = tmp_path / "block-now"
    env = {
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "200000",  # fed every 0.1 s
        "BLOCKER_FLAG": str(flag),
        **install_plugin(tmp_path / "plugins", "blocker_plugin", BLOCKER, {"blocker": "Blocker"}),
    }
    daemon = Daemon(site, env=env)
    daemon.start()
    try:
        first = datagrams(sock, 1.0)
        kinds = [m.split("\n")[0] for _, m in first]
        assert kinds[0] == "READY=1"
        assert "STATUS=" in first[0][1]
        assert kinds.count("WATCHDOG=1") >= 5  # ~10 expected in 1 s
        flag.touch()
        during = datagrams(sock, 3.5)
        beats = [t for t, m in during if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        assert max(gaps) >= 1.8, f"watchdog kept being fed while the loop was blocked: {gaps}"
        assert daemon.alive
        assert daemon.stop() == 0
        assert "STOPPING=1" in [m for _, m in datagrams(sock, 0.5)]
    finally:
        if daemon.alive:
            daemon.stop()
        sock.close()


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = (Path(__file__).parent.parent / "systemd" / "gatewayd.service").read_text()
    exe = Path(sys.executable).parent / "gatewayd"
    unit = unit.replace("/opt/gatewayd/venv/bin/gatewayd", str(exe))
    copy = tmp_path / "gatewayd.service"
    copy.write_text(unit)
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in out.stderr.splitlines() if "gatewayd.service" in line]
    assert out.returncode == 0, out.stderr
    assert problems == [], problems


def test_the_wheel_carries_the_unit_where_install_service_looks(tmp_path: Path) -> None:
    """An installed gateway has no source checkout: the wheel puts the unit in
    <prefix>/share/gatewayd/, one of the places `gatewayd install-service` looks."""
    import zipfile

    from gatewayd.cli.install import UNIT_NAME, unit_candidates

    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    for part in ("gatewayd", "drivers", "rules", "firmware_stubs", "systemd"):
        shutil.copytree(repo / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("gatewayd-*.whl")
    with zipfile.ZipFile(wheel) as z:
        inside = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/data/share/gatewayd/{UNIT_NAME}"
        assert z.read(inside) == (repo / "systemd" / UNIT_NAME).read_bytes()
    # pip installs a wheel's data/ under sys.prefix: that is where install-service looks.
    assert Path(sys.prefix) / "share" / "gatewayd" / UNIT_NAME in unit_candidates()


def test_the_unit_caps_descriptors_well_above_what_the_control_socket_may_take() -> None:
    from gatewayd.control import MAX_CLIENTS
    from tests.cli_support import unit_limit_nofile

    # Soft and hard limit alike (one value), with room for everything else the daemon holds.
    assert unit_limit_nofile() >= 8 * MAX_CLIENTS + 512
