"""Helpers for the CLI and control-socket tests: run `gatewayd` as an installer would (a real
subprocess, or click's runner), an SRB-433 emulator on its own thread, and a daemon that
serves the control socket.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import REPO, Daemon, ReceiverThread, wait_until

EmulatorThread = ReceiverThread  # the name these tests grew up with

DETECTOR = "1A2B3C4D"


def gatewayd(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m gatewayd ARGS` in a subprocess, as an installer would type it."""
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr, asserted to be one line with a ✗ and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("✗ "), result.stderr
    return lines[0]


class ControlDaemon(Daemon):
    """The real `gatewayd run`, ready once its control socket is up."""

    def start(self, wait_ready: bool = True) -> None:
        super().start(wait_ready)
        if wait_ready:
            wait_until(lambda: "control socket on" in self.output(), 15.0, "the control socket")


def unit_limit_nofile() -> int:
    """The descriptor limit the systemd unit gives the daemon (``LimitNOFILE=``)."""
    unit = (REPO / "systemd" / "gatewayd.service").read_text()
    [value] = [ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("LimitNOFILE=")]
    return int(value)


NOBODY_PYTHON = "/usr/bin/python3"


def nobody_can_run() -> str | None:
    """Why `as_nobody` cannot run here (None when it can): it needs root to drop to nobody,
    and a system Python of this version, since this one may live under root's home."""
    import shutil

    if os.geteuid() != 0:
        return "needs root to run a command as nobody"
    if shutil.which("setpriv") is None or not os.path.exists(NOBODY_PYTHON):
        return "needs setpriv and /usr/bin/python3"
    version = subprocess.run(
        [NOBODY_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if version != str(sys.version_info[:2]):
        return f"/usr/bin/python3 is {version}, not {sys.version_info[:2]}"
    return None


def _nobody_path(purelib: str) -> str:
    """The checkout, the plugin packages in it (plugins/*: their editable installs are .pth
    files, which PYTHONPATH does not read) and the venv's site-packages."""
    plugins = sorted(str(p) for p in (REPO / "plugins").glob("*") if p.is_dir())
    return os.pathsep.join([str(REPO), *plugins, purelib])


def as_nobody(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`gatewayd ARGS` as the unprivileged user nobody (no supplementary groups): an
    installer's own login, or the service user, as the kernel sees them."""
    import sysconfig

    path = _nobody_path(sysconfig.get_paths()["purelib"])
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         NOBODY_PYTHON, "-m", "gatewayd", *args],
        capture_output=True, text=True, timeout=timeout, cwd="/",
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )  # fmt: skip


def start_as_nobody(*args: str) -> subprocess.Popen[str]:
    """`gatewayd ARGS` as nobody, left running (a daemon)."""
    import sysconfig

    path = _nobody_path(sysconfig.get_paths()["purelib"])
    return subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         NOBODY_PYTHON, "-m", "gatewayd", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip


# What a Chinese screen may keep in English: the things a person types or searches for.
_KEPT_ENGLISH = [
    r"`[^`]*`",  # a command quoted
    # a command to type, up to the Chinese punctuation that ends it
    r"(?:sudo\s+)?(?:gatewayd|systemctl|journalctl|chown|chmod|install|usermod|pip|apt-get|"
    r"mosquitto_sub|bluetoothctl)\b[^，。；：（）、\n]*",
    r"\S*[/=@:][^\s，。；：（）]*",  # paths, key=value, URLs, host:port
    r"\b[\w.]*\d[\w.]*\b",  # ids and values with digits
    r"\b\w+(?:[-_.]\w+)+\b",  # key names and ids: metrics.listen, port_count, smoke-rx
    r"--[\w-]+",  # options
    r"\[\[?\w+\]\]?",  # [[buses]]
]


def english_sentences(text: str) -> list[str]:
    """Runs of three or more English words left once the kept things are taken out: what
    a Chinese screen must not show (key names, values, ids and commands may stay)."""
    import re

    found = []
    for line in text.splitlines():
        rest = line
        for rx in _KEPT_ENGLISH:
            rest = re.sub(rx, " ", rest)
        # Words joined by spaces make a sentence; a list after "可用的键：" is comma-joined names.
        for run in re.finditer(r"[A-Za-z]{2,}(?:[ ']+[A-Za-z]{2,}){2,}", rest):
            found.append(f"{run.group(0)!r} in {line!r}")
    return found


ZH = {"LANG": "zh_CN.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}


def press_test_until_done(
    proc: subprocess.Popen[str], receiver: ReceiverThread, passed: bool, timeout: float = 15
) -> tuple[str, str]:
    """Press the detector's test button every 0.3 s until ``proc`` (an `events` waiting for
    one, subscribing meanwhile) ends; its output. Killed if it outlives ``timeout``."""
    import time

    det = receiver.rx.detector(DETECTOR)
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            receiver.call(det.test(passed=passed))
            time.sleep(0.3)
        return proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
