"""TinyDB with a storage that survives a power cut mid-write.

TinyDB's stock JSONStorage rewrites its file in place; a power cut during that write can leave
an empty or torn file. This storage writes a temporary file, fsyncs it, renames it over the old
one and fsyncs the directory, so the file is always either the old or the new version. It is
meant for small documents (alarms, fire mode, device state) that change rarely.

``BackgroundWriter`` is the thread that does such writes (and the audit log's) in order, off
the event loop.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage


class AtomicJSONStorage(Storage):
    def __init__(self, path: str) -> None:
        self.path = path
        self._text: str | None = None  # what is on disk now

    def read(self) -> dict[str, Any] | None:
        # TinyDB mutates what read() returns before passing it to write(): hand out a fresh
        # copy each time, so "unchanged" below compares against the disk, not against itself.
        if self._text is None:
            try:
                with open(self.path, encoding="utf-8") as f:
                    self._text = f.read()
            except FileNotFoundError:
                return None
        try:
            data = json.loads(self._text)
        except ValueError:
            # A corrupt file is kept aside for a person to look at, never silently reused.
            os.replace(self.path, self.path + ".corrupt")
            self._text = None
            return None
        return data if isinstance(data, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if text == self._text:
            return  # nothing changed: spare the SD card
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._text = text

    def close(self) -> None:
        self._text = None


def open_db(data_dir: str, name: str = "state.json") -> TinyDB:
    os.makedirs(data_dir, mode=0o750, exist_ok=True)
    return TinyDB(os.path.join(data_dir, name), storage=AtomicJSONStorage)


class BackgroundWriter:
    """One thread that does a component's disk writes in order, off the event loop (a fire
    alarm must not wait for the SD card before the chargers are cut). A failed write is logged
    once, until a write succeeds again; ``failed`` says whether the last one did."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what, self.log = what, log
        self.failed = False
        self._io = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{what.split(maxsplit=1)[0]}-io"
        )
        self._pending: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pending = [f for f in self._pending if not f.done()]
        fut = self._io.submit(fn, *args)
        fut.add_done_callback(self._done)
        self._pending.append(fut)

    def flush(self) -> None:
        """Wait until every write so far was tried (shutdown, tests). Failures were logged."""
        concurrent.futures.wait(self._pending)
        self._pending = []

    def close(self) -> None:
        self.flush()
        self._io.shutdown(wait=True)

    def _done(self, f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None and not self.failed:
            self.log.error("cannot write the %s: %s", self.what, exc)
        self.failed = exc is not None
