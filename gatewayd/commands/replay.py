"""The replay cache: a command id is never accepted twice, across restarts too.

An id is remembered until its command has expired by *both* clocks the gateway has: the wall
clock (``exp`` is wall-clock time) and the monotonic clock, which no NTP step or hand-set date
moves. A forward jump of the wall clock alone therefore never forgets an id early, so the same
signed command cannot be accepted again when the clock is set back. (The gate refuses a
command whose lifetime exceeds 300 s or whose ``iat`` is more than 30 s ahead, so an id never
needs remembering for more than 330 s of real time after it was accepted.)

The file is append-only (one ``<exp> <id>`` line per command), fsynced before the command
moves anything, compacted at start-up. Whatever the file holds — torn lines, bytes that are not
UTF-8, garbage — start-up keeps the lines it can read and goes on. When the file cannot be
written (read-only or full SD card), ``add`` raises ``StorageFailed``: a command whose id cannot
be recorded is refused (it could be replayed after a power cut), and the runtime raises
``gateway.storage_failed`` until writing works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time

from gatewayd.errors import StorageFailed

log = logging.getLogger("gatewayd.commands.replay")

HORIZON = 330.0  # s of real time an accepted id can stay valid (lifetime 300 + skew 30)
PRUNE_ABOVE = 1024


class ReplayCache:
    def __init__(self, path: str) -> None:
        self.path = path
        # id -> (exp by the wall clock, forget-after by the monotonic clock)
        self._seen: dict[str, tuple[float, float]] = {}
        self._fd = -1
        self.error: str | None = None  # why the file cannot be written; None when it can
        self.skipped = 0  # lines of the file that could not be read at start
        self._load()
        self._compact()
        self._open()

    @property
    def healthy(self) -> bool:
        return self.error is None

    def seen(self, cid: str) -> bool:
        return cid in self._seen

    def add(self, cid: str, exp: float) -> None:
        """Remember ``cid``: in memory at once (refused again while this process lives, even
        if the disk fails), then appended to the file; ``sync`` makes it survive a power cut.
        Raises ``StorageFailed`` when it could not be appended."""
        left = max(0.0, min(exp - time.time(), HORIZON))
        self._seen[cid] = (exp, time.monotonic() + left)
        if len(self._seen) > PRUNE_ABOVE:
            self._prune()
        if self._fd < 0:
            self._open()
        if self._fd < 0:
            raise StorageFailed("replay cache", self.error or "not open")
        try:
            os.write(self._fd, f"{exp!r} {cid}\n".encode())
        except OSError as exc:
            self._failed(f"cannot append to {self.path}: {exc.strerror or exc}")
            raise StorageFailed("replay cache", self.error or str(exc)) from None
        self.error = None

    async def sync(self) -> None:
        """fsync in the executor: a command that actuates waits for this before it acts, so a
        replay after a power cut cannot open a door twice. Raises ``StorageFailed``."""
        fd = self._fd
        if fd < 0:
            raise StorageFailed("replay cache", self.error or "not open")
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, fd)
        except OSError as exc:
            self._failed(f"cannot sync {self.path}: {exc.strerror or exc}")
            raise StorageFailed("replay cache", self.error or str(exc)) from None

    def retry(self) -> None:
        """Try the file again after a failure (the runtime calls this now and then)."""
        if self.error is None:
            return
        self._close()
        self._compact()
        self._open()

    def _failed(self, why: str) -> None:
        if self.error is None:
            log.error("replay cache: %s; remote commands are refused until it works", why)
        self.error = why
        self._close()

    def _prune(self) -> None:
        wall, mono = time.time(), time.monotonic()
        for cid in [c for c, (exp, until) in self._seen.items() if exp < wall and until < mono]:
            del self._seen[cid]

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read %s (%s): starting with no remembered ids", self.path, exc)
            return
        wall, mono = time.time(), time.monotonic()
        for line in raw.split(b"\n"):
            exp_text, _, cid_bytes = line.partition(b" ")
            try:
                exp, cid = float(exp_text), cid_bytes.decode("ascii")
            except (ValueError, UnicodeDecodeError):
                self.skipped += bool(line)
                continue
            if cid and cid.isprintable() and math.isfinite(exp):
                # How long ago it was accepted is unknown: keep it for the longest it can
                # matter, from now.
                self._seen[cid] = (exp, mono + HORIZON)
            else:
                self.skipped += 1
        if self.skipped:
            log.warning("%s: %d unreadable line(s) skipped", self.path, self.skipped)
        self._prune_wall(wall)

    def _prune_wall(self, wall: float) -> None:
        # At start-up, ids long expired by the wall clock go; recent ones stay (see _load).
        for cid in [c for c, (exp, _) in self._seen.items() if exp < wall - 86400]:
            del self._seen[cid]

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, "".join(f"{e!r} {c}\n" for c, (e, _) in self._seen.items()).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            self._failed(f"cannot rewrite {self.path}: {exc.strerror or exc}")

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            self._failed(f"cannot open {self.path}: {exc.strerror or exc}")
            return
        self.error = None

    def _close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self._close()
