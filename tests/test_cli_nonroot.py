"""The CLI and the daemon as an unprivileged account meets them: the service user finding
files a root run left in its data directory, and an installer's login outside the gatewayd
group asking for the status. Each says what to run, with the exit code the docs promise."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import ControlDaemon, as_nobody, nobody_can_run, start_as_nobody
from tests.harness import Broker, Probe, make_site

pytestmark = pytest.mark.skipif(nobody_can_run() is not None, reason=str(nobody_can_run()))


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder nobody can walk into (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gatewayd-nonroot-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_service_user_meeting_root_files_says_the_chown_and_keeps_the_house_watched(
    open_tmp: Path, broker: Broker
) -> None:
    """A data directory with files an earlier `sudo gatewayd run` left: the daemon says the one
    command that fixes it, and runs (its rules from memory: issue 13, no file under the data
    directory stops the start), with a critical storage_failed until it is fixed."""
    site = make_site(open_tmp, broker.url)
    first = ControlDaemon(site)  # `sudo gatewayd run`, once, to try something
    first.start()
    assert first.stop() == 0
    data = open_tmp / "data"
    assert (data / "outbox").stat().st_uid == 0
    # Then the service was installed, but only the data directory itself given away.
    for path in (data, site.config, open_tmp / "command.key"):
        shutil.chown(path, "nobody", "nogroup")
    probe = Probe(broker.port)
    run = start_as_nobody("run", "-c", str(site.config))
    try:
        probe.wait(
            f"{site.root}/alarms",
            lambda b: any(a["type"] == "gateway.storage_failed" for a in b["active"]),
            timeout=20,
        )
        assert run.poll() is None  # running: the house is watched
    finally:
        probe.close()
        run.terminate()
        out = run.communicate(timeout=20)[1]
    assert run.returncode == 0, out
    fix = (
        f"permission denied: the data directory holds files nobody cannot write (left by "
        f"`sudo gatewayd run`?); fix: sudo chown -R nobody: {data}, then: sudo systemctl "
        "restart gatewayd"
    )
    assert [line for line in out.splitlines() if fix in line], out
    assert "Traceback" not in out
    unit = (Path(__file__).parent.parent / "systemd" / "gatewayd.service").read_text()
    assert "\nRestartPreventExitStatus=2\n" in unit  # a bad config or a second daemon


def test_a_login_outside_the_group_gets_exit_4_and_the_group_to_join(
    open_tmp: Path, broker: Broker
) -> None:
    etc = open_tmp / "etc"
    etc.mkdir(mode=0o750)  # /etc/gatewayd: root and the gatewayd group only
    site = make_site(etc, broker.url)
    site.config.chmod(0o640)
    status = as_nobody("--lang", "en", "status", "-c", str(site.config))
    assert status.returncode == 4, status.stderr
    assert status.stderr.strip() == (
        f"✗ {site.config}: permission denied; run with sudo, or join the group gatewayd: "
        "sudo usermod -aG gatewayd $USER (then log in again)"
    )
    # With the daemon running, the socket itself answers: not for this user either.
    sock = open_tmp / "control.sock"
    daemon = ControlDaemon(site, env={"GATEWAYD_CONTROL_SOCKET": str(sock)})
    daemon.start()
    try:
        status = as_nobody(
            "--lang", "en", "status", "-c", str(site.config),
            env={"GATEWAYD_CONTROL_SOCKET": str(sock)},
        )  # fmt: skip
    finally:
        daemon.stop()
    assert status.returncode == 4, status.stderr
    assert f"✗ {sock}: permission denied; run with sudo, or join the group" in status.stderr
