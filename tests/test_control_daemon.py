"""The control socket of the real `gatewayd run` (a subprocess, real mosquitto, the emulated
house), as a careless or hostile local user meets it:

- more connections than the unit's descriptor limit, held open: the daemon keeps answering
  (or says ``busy``), a smoke alarm at that moment still cuts every charger and enters fire
  mode, and fire mode is on disk (SIGKILL, restart: still in fire mode);
- malformed lines of every kind: each gets a coded answer, the log has no traceback;
- a forged name (newline, ANSI escapes) given when acknowledging an alarm or resetting fire
  mode: recorded as the client's OS account, the name only as a cleaned note, no forged line;
- a second `gatewayd run` on the same config: refused in one line naming the first one's pid,
  and the first one keeps its socket and its broker session.

The socket's own mechanics (bound, idle timeout, codes) are tested in-process in
tests/test_control.py; the request parser is fuzzed in tests/test_hardening_input.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.site import EmulatedSite, SitePlan
from gatewayd.control import MAX_CLIENTS
from tests.cli_support import (
    DETECTOR,
    ControlDaemon,
    EmulatorThread,
    gatewayd,
    one_clear_line,
    unit_limit_nofile,
)
from tests.hardening_support import control, fd_count
from tests.harness import REPO, Broker, Probe, Site, make_site, smoke_config, wait_until

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.-]+: ")
FIRE_RESETS = re.compile(r"(?m)^[\d-]+ [\d:,]+ WARNING gatewayd\.alarms: fire mode reset by (.*)$")


def no_traceback(log: str) -> None:
    assert "Traceback" not in log and "Unhandled exception" not in log, log[-3000:]
    # Every line is a whole log record: nothing a client sent started a line of its own.
    strays = [ln for ln in log.splitlines() if ln and not LOG_LINE.match(ln)]
    assert strays == [], strays


class Raw:
    """A bare connection: bytes out, answer lines in."""

    def __init__(self, path: str | Path | socket.socket, timeout: float = 10.0) -> None:
        sock = path if isinstance(path, socket.socket) else connect_soon(str(path), timeout)
        assert sock is not None, f"the daemon accepted no connection in {timeout} s"
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict[str, Any] | None:
        """The next answer; None once the daemon closed the connection."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return dict(json.loads(line))

    def ask(self, data: bytes) -> dict[str, Any] | None:
        self.send(data)
        return self.line()

    def close(self) -> None:
        self.sock.close()


# -- more connections than descriptors --------------------------------------------------------


@contextlib.contextmanager
def nofile(soft: int) -> Iterator[None]:
    """This process's soft descriptor limit set to ``soft`` meanwhile (children inherit it)."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < soft:
        pytest.skip(f"needs {soft} descriptors; the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


def connect_soon(path: str, timeout: float = 3.0) -> socket.socket | None:
    """A connection as soon as the listener's backlog has room (a full backlog is EAGAIN on a
    Unix socket); None when it had none for ``timeout`` s (the daemon stopped accepting)."""
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            if time.monotonic() > deadline:
                s.close()
                return None
            time.sleep(0.001)


@pytest.fixture
def house(tmp_path: Path) -> Iterator[EmulatedSite]:
    """Detectors and piles (every relay closed, as the emulator starts), no locks."""
    with EmulatedSite(tmp_path, SitePlan(locks={})) as site:
        yield site


def relays_closed(house: EmulatedSite) -> dict[str, list[int]]:
    return {dev: [p.number for p in pile.ports if p.relay] for dev, pile in house.piles()}


def test_more_idle_connections_than_descriptors_and_a_fire_still_cuts_and_is_persisted(
    tmp_path: Path, broker: Broker, probe: Probe, house: EmulatedSite
) -> None:
    limit = unit_limit_nofile()  # what systemd gives the daemon
    flood = max(1100, limit + 100)  # more than it could ever hold
    site = make_site(tmp_path, broker.url, house.config(tmp_path))
    sock = str(tmp_path / "control.sock")
    daemon = ControlDaemon(site, env={"GATEWAYD_CONTROL_SOCKET": sock})
    with nofile(limit):
        daemon.start()
    held: list[socket.socket] = []
    busy = {"ok": False, "code": "busy", "error": "busy: 32 clients connected"}
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        probe.wait(f"{site.root}/state/pile-3", lambda s: s.get("online") is True, timeout=15)
        assert all(relays_closed(house).values())  # every pile has a port switched on
        before = peak = fd_count(pid)
        with nofile(flood + 256):
            for i in range(flood):  # opened at once, never a byte sent
                if (s := connect_soon(sock)) is None:
                    break  # the daemon stopped accepting (asserted below)
                held.append(s)
                if i % 50 == 0:
                    peak = max(peak, fd_count(pid))
            opened = len(held)
            # A smoke alarm at that moment: every charger cut, fire mode entered...
            house.call(house.detector("smoke-301").alarm(150))
            wait_until(lambda: not any(relays_closed(house).values()), 5, "every relay open")
            probe.wait(f"{site.root}/status", lambda s: s.get("fire_mode") is True)
            wait_until(lambda: "FIRE MODE entered" in daemon.output(), 5, "fire mode logged")
            # A newcomer is answered, or told in one coded line that the daemon is busy: on the
            # socket, and as `gatewayd status` says it (exit 4: not reachable now).
            newcomer = Raw(sock, timeout=5)
            answer = newcomer.line()
            newcomer.close()
            assert answer is not None and (answer.get("ok") is True or answer == busy), answer
            cli = gatewayd("status", "-c", str(site.config), env={"GATEWAYD_CONTROL_SOCKET": sock})
            assert cli.returncode == 0 or (
                cli.returncode == 4 and one_clear_line(cli) == "✗ busy: 32 clients connected"
            ), cli.stderr
            # The connections beyond the bound were told so and closed at once.
            last = Raw(held[-1])
            assert (last.line(), last.line()) == (busy, None)
            while (n := fd_count(pid)) > before + MAX_CLIENTS + 8:  # refusals still under way
                peak = max(peak, n)
                time.sleep(0.01)
        # ...and written down: a restart, however abrupt, comes back in fire mode.
        daemon.kill()
        for s in held:
            s.close()
        held.clear()
        daemon.start()
        status = control(sock, {"cmd": "status"})
        assert (status["fire_mode"], status["pid"] != pid) == (True, True)
        alarms = control(sock, {"cmd": "alarms"})
        assert "gateway.fire_mode" in {a["type"] for a in alarms["alarms"]}
        log = daemon.log.read_text()
        assert "cannot write the alarm state" not in log
        assert "Too many open files" not in log
        no_traceback(log)
        assert opened == flood, f"the daemon stopped accepting after {opened} connections"
        print(f"\ndaemon descriptors: {before} before, at most {peak} while {flood} connected")
        # The bound, plus refusals in flight (accepted, answered, closed a few turns of the
        # loop later; asyncio accepts up to 100 a turn): far from the limit, whatever the flood.
        assert peak <= before + MAX_CLIENTS + 600 < limit // 2
    finally:
        for s in held:
            s.close()
        if daemon.alive:
            daemon.stop()


# -- malformed lines --------------------------------------------------------------------------


def test_every_malformed_line_gets_a_coded_answer_and_no_traceback(
    tmp_path: Path, broker: Broker
) -> None:
    sock = str(tmp_path / "control.sock")
    daemon = ControlDaemon(make_site(tmp_path, broker.url), env={"GATEWAYD_CONTROL_SOCKET": sock})
    daemon.start()
    try:
        not_a_request = {
            "ok": False,
            "code": "invalid",
            "error": 'expected {"cmd": ...} on one line',
        }
        too_deep = {"ok": False, "code": "invalid", "error": "request nested deeper than 16 levels"}
        c = Raw(sock)
        for line, answer in [
            (b"[" * 60_000, too_deep),  # json.loads would recurse (RecursionError)
            (b'{"cmd": "status", "x": ' + b"[" * 17 + b"]" * 17 + b"}", too_deep),
            (b"not json", not_a_request),
            (b'{"cmd": "status"', not_a_request),
            (b"[1, 2]", not_a_request),
            (b'"status"', not_a_request),
            (b"42", not_a_request),
            (b"null", not_a_request),
            (b"{}", not_a_request),
            (b'{"cmd": 5}', not_a_request),
            (b"\xff\xfe\x00", not_a_request),
            (b"", not_a_request),
            (b'{"cmd": "explode"}', {"ok": False, "code": "invalid", "error": "unknown command 'explode'"}),
            (b'{"cmd": "ack", "alarm": "x/y", "note": {"a": 1}}', {"ok": False, "code": "invalid", "error": "note must be a string"}),
            (b'{"cmd": "ack", "alarm": ["x"]}', {"ok": False, "code": "invalid", "error": "alarm must be a non-empty string"}),
            (b'{"cmd": "ack", "alarm": "nope/none"}', {"ok": False, "code": "not_found", "error": "no active alarm 'nope/none'"}),
            (b'{"cmd": "call", "device": "ghost", "method": "status"}', {"ok": False, "code": "not_found", "error": "no device 'ghost'"}),
        ]:  # fmt: skip
            assert c.ask(line + b"\n") == answer, line[:60]
        # The connection survived all of it.
        assert (c.ask(b'{"cmd": "status"}\n') or {})["gateway"] == "gw-test"
        # A line over the size bound: answered, then closed (its rest cannot be told apart
        # from a next request).
        assert c.ask(b"[" * 100_000 + b"\n") == {
            "ok": False,
            "code": "invalid",
            "error": "request longer than 65536 bytes",
        }
        assert c.line() is None
        c.close()
        # A last line without its newline, then the client stops sending: still answered.
        c = Raw(sock)
        c.send(b'{"cmd": "explode"}')
        c.sock.shutdown(socket.SHUT_WR)
        assert c.line() == {"ok": False, "code": "invalid", "error": "unknown command 'explode'"}
        assert c.line() is None
        c.close()
        assert control(sock, {"cmd": "status"})["ok"] is True
        assert daemon.alive
        no_traceback(daemon.output())
    finally:
        assert daemon.stop() == 0


# -- who acknowledged: the OS account, never a name the client gives -----------------------------

# Cursor up and erase line, then a line of its own: what a terminal or a naive log reader would
# show as the daemon saying that someone else reset fire mode.
FORGED = "\x1b[1A\x1b[2KLi\nWARNING gatewayd.alarms: fire mode reset by landlord\u2028"
CLEANED = "[1A [2KLi WARNING gatewayd.alarms: fire mode reset by landlord"


def other_account() -> tuple[str, list[str], dict[str, Any]]:
    """A client identity in the socket's group other than ours, when this runs as root: nobody,
    with root's group as a supplementary group (the socket is root:root 0660). Its Python may
    have to be the system's (this one may live under /root), given this venv's packages.
    Returns (account name, the Python to run, subprocess options); ourselves when not root or
    when nobody cannot run the CLI here."""
    import pwd
    import sysconfig

    me = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() != 0:
        return me, [sys.executable], {}
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return me, [sys.executable], {}
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    opts: dict[str, Any] = {
        "user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": [0], "env": env,
    }  # fmt: skip
    minor = f"python3.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        with contextlib.suppress(OSError):
            tried = subprocess.run(
                [python, "-c", "import gatewayd.cli.daemon"],
                cwd="/", capture_output=True, check=False, timeout=30, **opts,
            )  # fmt: skip
            if tried.returncode == 0:
                return "nobody", [python], opts
    return me, [sys.executable], {}


def test_ack_and_reset_are_recorded_as_the_os_account_the_given_name_only_as_a_clean_note(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    # A socket every account may reach the directory of: only its mode and SO_PEERCRED decide.
    where = Path(tempfile.mkdtemp(prefix="gwctl-"))
    where.chmod(0o755)
    sock = str(where / "control.sock")
    receiver = EmulatorThread(tmp_path / "srb433")
    site = make_site(tmp_path, broker.url, smoke_config(receiver.rx.path, {"smoke-301": DETECTOR}))
    daemon = ControlDaemon(site, env={"GATEWAYD_CONTROL_SOCKET": sock})
    who, python, as_who = other_account()
    env = {**as_who.pop("env", os.environ), "GATEWAYD_CONTROL_SOCKET": sock}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # The config is not readable by every account; the socket is found through the env.
        return subprocess.run(
            [*python, "-m", "gatewayd", *args, "-c", "/nonexistent/gateway.toml"],
            capture_output=True, text=True, timeout=30, cwd="/", check=False, env=env, **as_who,
        )  # fmt: skip

    daemon.start()
    try:
        det = receiver.rx.detector(DETECTOR)
        receiver.call(det.alarm(120))
        wait_until(
            lambda: any(a["type"] == "smoke.alarm" for a in control(sock, {"cmd": "alarms"})["alarms"]),
            10, "the smoke alarm",
        )  # fmt: skip
        mark = len(daemon.output())
        acked = cli("alarm", "ack", "smoke-301/smoke.alarm", "--note", FORGED)
        assert acked.returncode == 0, acked.stderr
        assert acked.stdout == f"✓ smoke-301/smoke.alarm acknowledged by {who} (note: {CLEANED})\n"
        [alarm] = [
            a for a in control(sock, {"cmd": "alarms"})["alarms"] if a["type"] == "smoke.alarm"
        ]
        assert alarm["acked_by"] == who
        probe.wait(
            f"{site.root}/alarms",
            lambda b: any(a["type"] == "smoke.alarm" and a["acked_by"] == who for a in b["active"]),
        )
        # The log: one line that says who acknowledged, with the cleaned note; none forged.
        wait_until(lambda: "acknowledged by" in daemon.output()[mark:], 5, "the ack in the log")
        log = daemon.output()[mark:]
        acks = re.findall(
            r"(?m)^[\d-]+ [\d:,]+ INFO gatewayd\.alarms: alarm smoke-301/smoke\.alarm acknowledged by (.*)$",
            log,
        )
        assert acks == [f"{who} (note: '{CLEANED}')"]
        assert len([ln for ln in log.splitlines() if "landlord" in ln]) == 1
        assert FIRE_RESETS.findall(log) == []  # (a grep for it would be fooled; the records not)
        assert "\x1b" not in daemon.output() and "\u2028" not in daemon.output()
        no_traceback(daemon.output())

        # Fire mode reset, with the old --user option (now sent as the note).
        receiver.call(det.clear())
        wait_until(
            lambda: all(a["type"] != "smoke.alarm" for a in control(sock, {"cmd": "alarms"})["alarms"]),
            10, "the detector cleared",
        )  # fmt: skip
        reset = cli("alarm", "reset", "--user", "installer\r\nli")
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout == f"✓ fire mode reset by {who}\n"
        probe.wait(f"{site.root}/status", lambda s: s.get("fire_mode") is False)
        wait_until(lambda: FIRE_RESETS.findall(daemon.output()[mark:]), 5, "the reset's line")
        log = daemon.output()[mark:]
        assert FIRE_RESETS.findall(log) == [f"{who} (note: 'installer li')"]
        no_traceback(daemon.output())
    finally:
        daemon.stop()
        receiver.close()
        shutil.rmtree(where, ignore_errors=True)


# -- one daemon per data directory ---------------------------------------------------------------


def test_a_second_daemon_on_the_same_config_is_refused_in_one_line_the_first_keeps_serving(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    site: Site = make_site(tmp_path, broker.url)
    first = ControlDaemon(site)
    first.start()
    try:
        assert first.proc is not None
        probe.wait(f"{site.root}/status", lambda s: s.get("online") is True)
        sock = first.site.dir / "data" / "control.sock"
        started = time.monotonic()
        second = gatewayd("run", "-c", str(site.config), timeout=20)
        took = time.monotonic() - started
        assert second.returncode == 2
        data = site.dir / "data"
        assert one_clear_line(second) == (
            f"✗ another gatewayd (pid {first.proc.pid}) is already running on {data}; "
            "stop it first (systemctl stop gatewayd), or give this one its own gateway.data_dir"
        )
        assert second.stdout == ""
        assert took < 10, took
        # The first one kept its socket, its broker session, and its say about the house.
        assert control(sock, {"cmd": "status"})["pid"] == first.proc.pid
        time.sleep(1.5)  # a clash of client ids would have dropped it (and sent its will) by now
        statuses = [m.json() for m in probe.on(f"{site.root}/status")]
        assert statuses and all(s["online"] for s in statuses), statuses
        assert control(sock, {"cmd": "status"})["broker_connected"] is True
        assert first.alive
        no_traceback(first.output())
    finally:
        assert first.stop() == 0
    # Once it has stopped, the lock is gone with it: the next one starts.
    again = ControlDaemon(site)
    again.start()
    assert again.stop() == 0
