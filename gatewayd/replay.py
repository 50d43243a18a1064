"""The replay cache: a command id is never accepted twice, across restarts too.

Ids are remembered until their command expires (at most 300 s plus the allowed clock skew).
The file is append-only (one ``<exp> <id>`` line per command, fsynced), compacted at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

log = logging.getLogger("gatewayd.replay")


class ReplayCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: dict[str, float] = {}
        self.degraded = False  # the file could not be written: protection is in memory only
        now = time.time()
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    exp_text, _, cid = line.rstrip("\n").partition(" ")
                    try:
                        exp = float(exp_text)
                    except ValueError:
                        continue  # a torn last line after a power cut
                    if cid and exp > now:
                        self._seen[cid] = exp
        except FileNotFoundError:
            pass
        self._compact()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def seen(self, cid: str) -> bool:
        exp = self._seen.get(cid)
        return exp is not None and exp > time.time() - 60

    def add(self, cid: str, exp: float) -> None:
        """Remember ``cid``: appended at once (a crashed process cannot lose it); ``sync``
        makes it survive a power cut too, off the event loop."""
        self._seen[cid] = exp
        try:
            os.write(self._fd, f"{exp!r} {cid}\n".encode())
        except OSError as exc:
            # Disk full or read-only: the id is still refused while this process lives (the
            # window a replay can use is at most 300 s); say so once, keep serving.
            if not self.degraded:
                log.error(
                    "replay cache cannot write %s (%s): ids kept in memory only", self.path, exc
                )
            self.degraded = True
        if len(self._seen) > 1024:
            self._prune()

    async def sync(self) -> None:
        """fsync in the executor: a command that actuates waits for this before it acts, so a
        replay after a power cut cannot open a door twice."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, self._fd)
        except OSError as exc:
            if not self.degraded:
                log.error(
                    "replay cache cannot sync %s (%s): ids kept in memory only", self.path, exc
                )
            self.degraded = True

    def _prune(self) -> None:
        horizon = time.time() - 60
        for cid in [c for c, e in self._seen.items() if e < horizon]:
            del self._seen[cid]

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{exp!r} {cid}\n" for cid, exp in self._seen.items())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def close(self) -> None:
        os.close(self._fd)
