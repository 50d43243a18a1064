"""One daemon per data directory (gatewayd.instance): the lock on the data directory, on a
read-only one, on the config when there is no data directory to be had, freed however its
holder ends, and the holder's pid as /proc/locks gives it. The whole `gatewayd run` refused a
second time is in tests/test_control_daemon.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import instance
from tests.hardening_support import remount_ro, tmpfs
from tests.harness import REPO, wait_until

HOLD = """
import sys, time
from gatewayd import instance
lock = instance.acquire(sys.argv[1], sys.argv[2])
print(lock.path, flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def holding(data_dir: Path, config: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that has taken the lock and keeps it, until SIGKILLed on leaving."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(config)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_a_second_holder_is_refused_naming_the_first_and_a_killed_one_frees_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    data = tmp_path / "data"
    with holding(data, config) as first:
        # Created as the daemon would have created it.
        assert data.is_dir() and (data.stat().st_mode & 0o777) == 0o750
        with pytest.raises(instance.AlreadyRunning) as refused:
            instance.acquire(str(data), str(config))
        assert (refused.value.pid, refused.value.path) == (first.pid, str(data))
        assert str(refused.value) == (
            f"another gatewayd (pid {first.pid}) is already running on {data}; "
            "stop it first (systemctl stop gatewayd), or give this one its own gateway.data_dir"
        )
        assert os.listdir(data) == []  # nothing written: no pid file, no lock file
    # No stale lock after a SIGKILL: the kernel dropped it with the process.
    with instance.acquire(str(data), str(config)) as lock:
        assert lock.path == str(data)
    # Released: the next one gets it at once.
    instance.acquire(str(data), str(config)).release()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only tmpfs")
def test_a_read_only_data_dir_is_locked_and_a_missing_one_under_it_falls_back_to_the_config(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    with tmpfs(tmp_path / "ro") as ro:
        remount_ro(ro)
        with holding(ro, config) as first:
            with pytest.raises(instance.AlreadyRunning) as refused:
                instance.acquire(str(ro), str(config))
            assert (refused.value.pid, refused.value.path) == (first.pid, str(ro))
        # A data directory that cannot be created: the config is what is locked.
        missing = ro / "data"
        with holding(missing, config) as first:
            assert not missing.exists()
            with pytest.raises(instance.AlreadyRunning) as refused:
                instance.acquire(str(missing), str(config))
            assert (refused.value.pid, refused.value.path) == (first.pid, str(config))
        wait_until(lambda: instance.holder(*_dev_ino(config)) is None, 5, "the lock dropped")


def _dev_ino(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_the_holder_is_read_from_proc_locks_by_device_and_inode(tmp_path: Path) -> None:
    dev = os.makedev(0xB3, 2)
    locks = tmp_path / "locks"
    locks.write_text(
        "1: POSIX  ADVISORY  WRITE 111 b3:02:4242 0 EOF\n"  # not a flock
        "2: FLOCK  ADVISORY  WRITE 222 b3:02:4242 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 333 b3:02:4242 0 EOF\n"  # a waiter, not the holder
        "3: FLOCK  ADVISORY  WRITE 444 00:2d:5151 0 EOF\n"
        "4: FLOCK  ADVISORY  WRITE 555 08:01:6161 0 EOF\n"
        "5: FLOCK  ADVISORY  WRITE 666 08:02:6161 0 EOF\n"
        "garbage\n"
    )
    assert instance.holder(dev, 4242, str(locks)) == 222
    # Another device number than stat() gives (overlayfs): the inode alone, if unique.
    assert instance.holder(dev, 5151, str(locks)) == 444
    assert instance.holder(dev, 6161, str(locks)) is None  # two candidates: no guess
    assert instance.holder(dev, 7171, str(locks)) is None
    assert instance.holder(dev, 4242, str(tmp_path / "none")) is None
