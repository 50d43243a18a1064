"""What a person gets for a slip of the keyboard or a pipe: a typo'd command is answered with
the command they meant, `--debug` works wherever it is typed, and a reader that stops early
(`gatewayd status | head -1`) is not an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli_support import ControlDaemon, gatewayd
from tests.harness import REPO, Broker, make_site


def test_a_typo_gets_the_command_it_was_meant_to_be() -> None:
    typo = gatewayd("--lang", "en", "staus")
    assert typo.returncode == 2
    assert "no such command 'staus'. Did you mean: status?" in typo.stderr
    two = gatewayd("--lang", "en", "chek")
    assert "Did you mean: check?" in two.stderr
    nothing_close = gatewayd("--lang", "en", "xyzzy")
    assert nothing_close.returncode == 2
    assert "no such command 'xyzzy'. The commands: gatewayd --help" in nothing_close.stderr
    assert "Traceback" not in typo.stderr + two.stderr + nothing_close.stderr


def test_debug_and_lang_are_taken_after_the_command_too(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, "mqtt://127.0.0.1:9").config
    late = gatewayd("status", "-c", str(cfg), "--debug", "--lang", "en")
    assert late.returncode == 4, late.stderr  # no daemon: the command ran, the options taken
    assert "the daemon is not running" in late.stderr
    assert "No such option" not in late.stderr


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`gatewayd ARGS | head -0`: stdout is a pipe whose reader has gone already."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gatewayd", *args],
            stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=30,
        )  # fmt: skip
    finally:
        os.close(write)


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path, broker: Broker) -> None:
    site = make_site(tmp_path, broker.url)
    offline = _closed_pipe_run("device", "list", "-c", str(site.config))
    assert (offline.returncode, offline.stderr) == (0, "")
    daemon = ControlDaemon(site)
    daemon.start()
    try:
        status = _closed_pipe_run("status", "-c", str(site.config))
    finally:
        daemon.stop()
    assert status.stderr == "", status.stderr  # no "✗ Broken pipe", no "Exception ignored"
    assert status.returncode == 0
