"""The access audit log: every access decision at a door, kept on the gateway.

App unlocks with their user, card/PIN/fingerprint openings, refusals (by the gateway or by the
lock) and forced openings are appended as JSON lines to ``<data_dir>/audit/audit.log``, one
fsync per entry (access events are rare; losing one to a power cut is not acceptable). The log
is bounded: it rotates at ``max_bytes`` and keeps ``keep`` old files. It is never rewritten.
The same decisions reach the broker as door events and command results. People's acks and
resets of alarms are recorded here too.

An audit log that cannot be written (read-only or full SD card) never stops the gateway: it
says so (``healthy``), remote door commands are refused meanwhile (nothing may open a door
unrecorded), and it tries again.

Remote unlocks: the lock reports them with user 0 (it cannot know who tapped the phone), so
this module remembers which user's command is in flight at which door and attributes the
lock's next "unlocked, remote" event to that user.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gatewayd.family import Family
from gatewayd.model import Event
from gatewayd.store import BackgroundWriter

log = logging.getLogger("gatewayd.audit")

ATTRIBUTE_WITHIN = 10.0  # s between a remote command and the lock's unlocked event


class AuditLog:
    def __init__(self, directory: str, max_bytes: int = 1 << 20, keep: int = 4) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "audit.log")
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd = -1
        self._size = 0
        self._expected: dict[str, tuple[str, str, float]] = {}  # device -> (user, command id, at)
        self.entries = 0
        self._writer = BackgroundWriter("audit log", log)
        try:
            self._open()
        except OSError as exc:  # a read-only or full card: entries are tried again as they come
            self._writer.failed, self._writer.error = True, str(exc)
            log.error("cannot open the audit log %s: %s", self.path, exc.strerror or exc)

    @property
    def healthy(self) -> bool:
        """Whether access decisions can be recorded now (the last write worked)."""
        return not self._writer.failed

    @property
    def error(self) -> str | None:
        return self._writer.error

    def unrecorded(self, family: Family | None) -> str | None:
        """Why an access decision at a device of ``family`` cannot be recorded now (None: it
        can, or the family's commands are not access decisions)."""
        if family is None or not family.audited or self.healthy:
            return None
        return f"the audit log cannot be written ({self.error})"

    def retry(self) -> None:
        """Try the disk again after a failure (the runtime calls this now and then)."""
        if self._writer.failed:
            self._writer.submit(self._reopen)

    def _open(self) -> None:
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _reopen(self) -> None:
        if self._fd < 0:
            self._open()
        os.fsync(self._fd)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Queue one entry; the writer thread appends and fsyncs it, in order."""
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        line = text.encode("utf-8", "backslashreplace") + b"\n"
        self.entries += 1
        self._writer.submit(self._write, line)

    def flush(self) -> None:
        """Wait until every entry so far was tried. Failures were logged."""
        self._writer.flush()

    def _write(self, line: bytes) -> None:
        if self._fd < 0:
            self._open()
        if self._size + len(line) > self.max_bytes:
            self._rotate()
        os.write(self._fd, line)
        os.fsync(self._fd)
        self._size += len(line)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for i in range(self.keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        stale = f"{self.path}.{self.keep + 1}"
        if os.path.exists(stale):
            os.unlink(stale)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0

    # -- what the runtime tells it --------------------------------------------------------

    def expect(self, device: str, user: str, cid: str) -> None:
        """A verified remote unlock is about to go to ``device``: the lock's "unlocked" event
        (which can arrive before its ACK) belongs to ``user``."""
        self._expected[device] = (user, cid, time.time())

    def command(
        self, device: str, action: str, user: str, cid: str | None, code: str, detail: str = ""
    ) -> None:
        """A remote command for a door lock and what became of it."""
        self.append(
            {
                "ts": time.time(),
                "device": device,
                "source": "app",
                "action": action,
                "user": user,
                "command": cid,
                "outcome": code,
                "detail": detail,
            }
        )

    def attribute(self, event: Event, family: Family) -> Event:
        """A remote command the device reported without a user gets the commanding user."""
        if not family.remote_report(event):
            return event
        pending = self._expected.pop(event.device, None)
        if pending is None or event.ts - pending[2] > ATTRIBUTE_WITHIN:
            return event
        return replace(event, data={**event.data, "user": pending[0], "command": pending[1]})

    def event(self, event: Event, family: Family) -> None:
        """Record ``event`` if its family says it is an access decision."""
        if event.type in family.audit_events:
            data, spec = event.data, family.events.get(event.type)
            self.append(
                {
                    "ts": event.ts,
                    "device": event.device,
                    "source": event.kind,
                    "action": event.type,
                    "method": data.get("method"),
                    "user": data.get("user"),
                    "event": event.id,
                    "outcome": spec.outcome if spec is not None else "done",
                }
            )

    def alarm(self, action: str, alarm: str, user: str, source: str, note: str | None) -> None:
        """A person acknowledged or reset an alarm (fire mode included)."""
        self.append(
            {
                "ts": time.time(),
                "device": alarm.partition("/")[0],
                "source": source,
                "action": action,
                "alarm": alarm,
                "user": user,
                "note": note,
                "outcome": "done",
            }
        )

    def close(self) -> None:
        self._writer.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read(directory: str) -> list[dict[str, Any]]:
    """Every entry still kept, oldest first (for `gatewayd` tooling and tests); lines that
    are not whole JSON objects (torn by a power cut) are skipped."""
    path = os.path.join(directory, "audit.log")
    files = [f"{path}.{i}" for i in range(9, 0, -1)] + [path]
    out: list[dict[str, Any]] = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                lines = fh.read().split(b"\n")
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
    return out
