"""TinyDB with a storage that survives what SD cards do: power cuts, torn and garbled files.

TinyDB's stock JSONStorage rewrites its file in place, so a power cut can leave it empty or
torn, and a flipped bit in a file that still parses goes unnoticed. ``DurableStorage`` keeps
two copies (``state.json`` and ``state.json.bak``), each written to a temporary file, fsynced
and renamed into place, and each carrying a header with a generation number, the body's
length and its CRC-32. Reading takes the newest copy that verifies; a copy that does not is
kept aside (``.corrupt``) for a person and rewritten from the good one. Because both copies
hold the newest state, one damaged file never rolls the gateway back a change (a fire mode
entered just before is not forgotten).

Reading never raises: whatever is on disk, the storage answers with the newest good state or
with nothing, and says which (``report``). Writing raises ``OSError`` (read-only or full SD
card); ``BackgroundWriter`` runs writes in order off the event loop and tells its owner when
writes fail and when they work again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

log = logging.getLogger("gatewayd.store")

MAGIC = b"gatewayd-state"
MAX_STATE_BYTES = 16 << 20  # a state file is a few KB; anything bigger is not ours


@dataclass
class LoadReport:
    """What reading the state found: ``lost`` when files were there and none was usable."""

    source: str | None = None  # the copy the state came from; None: nothing usable
    damaged: list[str] = field(default_factory=list)  # copies that did not verify
    lost: bool = False


def _encode(generation: int, body: bytes) -> bytes:
    header = b"%s 1 %d %08x %d\n" % (MAGIC, generation, zlib.crc32(body), len(body))
    return header + body


def _decode(raw: bytes) -> tuple[int, dict[str, Any]] | None:
    """(generation, document) if ``raw`` is a whole, unaltered copy; else None."""
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if sep and len(parts) == 5 and parts[0] == MAGIC and parts[1] == b"1":
        try:
            generation, crc, length = int(parts[2]), int(parts[3], 16), int(parts[4])
        except ValueError:
            return None
        if len(body) != length or zlib.crc32(body) != crc:
            return None
    elif raw[:1] == b"{":  # written by gatewayd before checksums: plain JSON, generation 0
        generation, body = 0, raw
    else:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return (generation, doc) if isinstance(doc, dict) else None


class DurableStorage(Storage):
    def __init__(self, path: str) -> None:
        self.path = path
        self.copies = (path, path + ".bak")
        self.report = LoadReport()
        self.generation = 0
        self._doc: dict[str, Any] | None = None
        self._text: bytes | None = None  # the body on disk now, to skip unchanged writes
        self._loaded = False

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        if not self._loaded:
            self._load()
        # TinyDB mutates what read() returns before it writes: hand out a fresh copy.
        return json.loads(json.dumps(self._doc)) if self._doc is not None else None

    def _load(self) -> None:
        self._loaded = True
        found: list[tuple[int, str, dict[str, Any]]] = []
        present = False
        for copy in self.copies:
            raw = _read_file(copy)
            if raw is None:
                continue
            present = True
            decoded = _decode(raw) if len(raw) <= MAX_STATE_BYTES else None
            if decoded is None:
                self.report.damaged.append(copy)
                continue
            found.append((decoded[0], copy, decoded[1]))
        if found:
            generation, source, doc = max(found, key=lambda f: f[0])
            self.generation, self._doc, self.report.source = generation, doc, source
        elif present:
            self.report.lost = True
        for copy in self.report.damaged:
            log.error("state copy %s is damaged (torn, garbled or zeroed); not used", copy)
            _keep_aside(copy)
        if self.report.lost:
            log.critical("no usable copy of the gateway's state in %s", os.path.dirname(self.path))

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: dict[str, Any]) -> None:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace"
        )
        if body == self._text and not self.report.damaged:
            return  # nothing changed: spare the SD card
        generation = self.generation + 1
        raw = _encode(generation, body)
        for copy in self.copies:  # both copies hold the newest state
            _replace(copy, raw)
        _sync_dir(os.path.dirname(self.path) or ".")
        self.generation, self._text, self._doc = generation, body, data
        self.report.damaged = []

    def close(self) -> None:
        pass


def _read_file(path: str) -> bytes | None:
    """The file's bytes; None if it does not exist; b"" if it exists but cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, permission denied, an I/O error of a dying card
        log.error("cannot read %s: %s", path, exc.strerror or exc)
        return b""


def _keep_aside(path: str) -> None:
    with contextlib.suppress(OSError):  # read-only: it stays where it is, and is not used
        os.replace(path, path + ".corrupt")


def _replace(path: str, raw: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _sync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def open_db(data_dir: str, name: str = "state.json") -> tuple[TinyDB, LoadReport]:
    """The gateway's TinyDB and what reading it found. Never raises for what is on disk."""
    try:
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
    except OSError as exc:
        log.error("cannot create %s (%s): state kept in memory only", data_dir, exc.strerror)
    db = TinyDB(os.path.join(data_dir, name), storage=DurableStorage)
    storage = db.storage
    assert isinstance(storage, DurableStorage)
    storage.read()
    return db, storage.report


class BackgroundWriter:
    """One thread that does a component's disk writes in order, off the event loop (a fire
    alarm must not wait for the SD card before the chargers are cut). A failed write is logged
    once, until a write succeeds again; ``failed`` says whether the last one did, and
    ``on_health(ok)`` (called from the writer thread) hears every change of it."""

    def __init__(
        self, what: str, log: logging.Logger, on_health: Callable[[bool], None] | None = None
    ) -> None:
        self.what, self.log = what, log
        self.failed = False
        self.error: str | None = None
        self.on_health = on_health
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
        elif exc is None and self.failed:
            self.log.warning("the %s is written again", self.what)
        was, self.failed = self.failed, exc is not None
        self.error = str(exc) if exc is not None else None
        if was != self.failed and self.on_health is not None:
            self.on_health(not self.failed)
