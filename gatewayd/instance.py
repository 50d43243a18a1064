"""One daemon per data directory.

Two daemons on the same data would fight over everything that is one per house: the control
socket, the MQTT client id (the broker drops one each time the other connects, and each
connect publishes the other's will: "offline"), the serial port, the state file. So
``gatewayd run`` takes an exclusive ``flock`` on the data directory itself before anything is
built or written, and holds it for its lifetime; a second one finds it taken and exits with one
line naming the first one's pid.

The lock is on a descriptor of the directory, not on a file inside it: it works on a data
directory that is read-only (how SD cards fail; the daemon must still start and run the rules)
and leaves nothing behind. The kernel drops it when the process ends, however it ends, so
there is no stale lock after a SIGKILL or a power cut. When the data directory does not exist
and cannot be created, the config file is locked instead: the daemon then runs from memory,
and two on the same config are still one too many. The pid of the holder comes from
``/proc/locks``, which lists every flock with the device and inode it is on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from gatewayd.errors import GatewayError

PROC_LOCKS = "/proc/locks"


class AlreadyRunning(GatewayError):
    """Another process holds the lock on ``path``; ``pid`` when /proc/locks names it."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"another gatewayd (pid {pid})" if pid else "another gatewayd"
        super().__init__(
            f"{who} is already running on {path}; stop it first (systemctl stop gatewayd), "
            "or give this one its own gateway.data_dir"
        )


class InstanceLock:
    """The held lock. ``release`` (or the end of the process) frees it."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(data_dir: str, config_path: str) -> InstanceLock:
    """Lock ``data_dir`` (created first, mode 0750, as the daemon would), else ``config_path``
    when the directory cannot be had; ``AlreadyRunning`` when another process holds it.
    Other failures to open or lock are OSError."""
    with contextlib.suppress(OSError):  # read-only parent, no permission: lock the config
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        path = data_dir
    except OSError:
        fd = os.open(config_path, os.O_RDONLY)
        path = config_path
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        st = os.fstat(fd)
        os.close(fd)
        raise AlreadyRunning(path, holder(st.st_dev, st.st_ino)) from None
    except OSError:
        os.close(fd)
        raise
    return InstanceLock(fd, path)


def holder(dev: int, ino: int, locks: str = PROC_LOCKS) -> int | None:
    """The pid holding a flock on the file (``dev``, ``ino``), from /proc/locks; None when it
    is not listed (or the list cannot be read). A line reads
    ``1: FLOCK  ADVISORY  WRITE 4242 b3:02:131081 0 EOF`` (major:minor in hex); waiters are
    listed with ``->`` and are skipped."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    by_inode: set[int] = set()
    try:
        with open(locks, encoding="ascii", errors="replace") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for row in rows:
        if len(row) < 6 or row[1] != "FLOCK" or not row[4].isdigit():
            continue
        pid, where = int(row[4]), row[5]
        if where == want:
            return pid
        if where.rpartition(":")[2] == str(ino):
            by_inode.add(pid)
    # Some filesystems (overlayfs, btrfs subvolumes) show another device number in
    # /proc/locks than stat() gives; the inode alone is then good enough if it is unique.
    return by_inode.pop() if len(by_inode) == 1 else None
