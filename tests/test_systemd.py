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


def test_status_follows_the_broker_after_ready(tmp_path: Path) -> None:
    """`systemctl status` shows the STATUS= last sent: it must not keep "broker offline" from
    READY once the broker is there, nor "broker connected" once it is gone."""
    from tests.harness import Broker, free_port

    port = free_port()
    site: Site = make_site(tmp_path, f"mqtt://127.0.0.1:{port}")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    daemon = Daemon(site, env={"NOTIFY_SOCKET": str(sock_path)})  # no watchdog: status alone
    daemon.start(wait_ready=False)
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", port=port)
    try:
        ready = [m for _, m in datagrams(sock, 3.0)]
        assert ready and ready[0].startswith("READY=1\nSTATUS=")
        assert "broker offline" in ready[0]
        broker.start()
        later = [m for _, m in datagrams(sock, 8.0)]
        assert "STATUS=0 devices, 0 alarms, broker connected" in later, later
        assert not any(m.startswith("WATCHDOG") for m in ready + later)
        broker.stop()
        gone = [m for _, m in datagrams(sock, 6.0)]
        assert "STATUS=0 devices, 0 alarms, broker offline" in gone, gone
    finally:
        daemon.stop()
        broker.stop()
        sock.close()


def test_status_says_unhealthy_and_clears_it_on_recovery() -> None:
    """The daemon's health can come back (the watchdog then resumes): STATUS= follows."""
    import asyncio
    import os
    import tempfile

    from gatewayd import sdnotify

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sick = {"now": None}
        os.environ["NOTIFY_SOCKET"] = path
        try:

            async def scenario() -> None:
                task = asyncio.create_task(
                    sdnotify.report(lambda: sick["now"], lambda: "3 devices, broker connected", 0.05)
                )
                await asyncio.sleep(0.2)
                sick["now"] = "supervisor of bus rs485 has ended"
                await asyncio.sleep(0.2)
                sick["now"] = None
                await asyncio.sleep(0.2)
                task.cancel()

            asyncio.run(scenario())
        finally:
            del os.environ["NOTIFY_SOCKET"]
        sent = [m for _, m in datagrams(sock, 0.2)]
        sock.close()
    statuses = [m for m in sent if m.startswith("STATUS=")]
    assert statuses == [
        "STATUS=unhealthy: supervisor of bus rs485 has ended",
        "STATUS=3 devices, broker connected",
    ]
    first_sick = sent.index(statuses[0])
    healed = sent.index(statuses[1])
    assert "WATCHDOG=1" not in sent[first_sick:healed]  # not fed while sick
    assert "WATCHDOG=1" in sent[healed:]  # fed again once well


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


def test_the_wheel_installs_the_unit_and_the_guide_the_unit_names(tmp_path: Path) -> None:
    """An installed gateway has no source checkout: the wheel puts the unit in
    <prefix>/share/gatewayd/ and the guide in <prefix>/share/doc/gatewayd/; install-service,
    run from that installation, writes a unit whose Documentation= is a file that exists."""
    import sysconfig
    import zipfile

    from gatewayd.cli.install import UNIT_NAME

    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    for part in ("gatewayd", "drivers", "rules", "firmware_stubs", "systemd", "docs"):
        shutil.copytree(repo / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "gateway.toml"):
        shutil.copy(repo / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("gatewayd-*.whl")
    data = "-".join(wheel.name.split("-")[:2]) + ".data/data/share"
    with zipfile.ZipFile(wheel) as z:
        assert z.read(f"{data}/gatewayd/{UNIT_NAME}") == (repo / "systemd" / UNIT_NAME).read_bytes()
        assert z.read(f"{data}/doc/gatewayd/installer.md") == (repo / "docs/installer.md").read_bytes()
        assert f"{data}/doc/gatewayd/troubleshooting.md" in z.namelist()

    # Installed as docs/installer.md says (a venv, pip install the wheel); its dependencies
    # borrowed from this venv, since the test must not download anything.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    [site] = venv.glob("lib/python*/site-packages")
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    guide = venv / "share" / "doc" / "gatewayd" / "installer.md"
    assert guide.is_file()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[gateway]\nid = "gw1"\n\n[mqtt]\nurl = "mqtt://x"\n')
    out = subprocess.run(
        [str(venv / "bin" / "gatewayd"), "install-service", "--dry-run", "-c", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"\nDocumentation={guide.as_uri()}\n" in out.stdout
    assert f"\nExecStart={venv / 'bin' / 'gatewayd'} run -c {cfg}\n" in out.stdout
    # The shipped default is where docs/installer.md puts the venv.
    shipped = (repo / "systemd" / UNIT_NAME).read_text()
    assert "Documentation=file:///opt/gatewayd/venv/share/doc/gatewayd/installer.md" in shipped
    assert "ExecStart=/opt/gatewayd/venv/bin/gatewayd " in shipped


def test_the_unit_caps_descriptors_well_above_what_the_control_socket_may_take() -> None:
    from gatewayd.control import MAX_CLIENTS
    from tests.cli_support import unit_limit_nofile

    # Soft and hard limit alike (one value), with room for everything else the daemon holds.
    assert unit_limit_nofile() >= 8 * MAX_CLIENTS + 512
