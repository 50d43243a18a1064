"""Pushing an alarm to a person beyond the open pages: the notifier interface SMS, voice and
WeChat providers implement, and the two the relay ships (a JSON-lines file and a webhook).

A notifier gets one Notification per person per push and must not block the event loop; it
raises NotifyError when the provider refused, and the relay records the failure in the
incident's log. Contact details come from the person's account (phone), never from the
alarm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from dataclasses import asdict, dataclass
from typing import Protocol

log = logging.getLogger("gatewayd_relay.notify")


@dataclass(frozen=True)
class Notification:
    incident: int
    house: str  # the house's name
    gateway_id: str
    alarm_id: str
    type: str
    severity: str
    device: str
    since: float
    #: 0: the first push (landlord and grid workers); 1, 2, …: escalations.
    level: int
    username: str
    name: str
    phone: str
    url: str


class NotifyError(Exception):
    pass


class Notifier(Protocol):
    async def send(self, note: Notification) -> None: ...


class LogNotifier:
    async def send(self, note: Notification) -> None:
        log.info(
            "alarm %s of %s pushed to %s (level %d)",
            note.alarm_id,
            note.gateway_id,
            note.username,
            note.level,
        )


class FileNotifier:
    """One JSON object a line: what tests and a provider's batch upload read."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def send(self, note: Notification) -> None:
        line = json.dumps(asdict(note), ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


class WebhookNotifier:
    """POSTs the notification as JSON; a 2xx is success."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"webhook {url!r}: expected an http(s) URL")
        self.url = url
        self.timeout = timeout

    async def send(self, note: Notification) -> None:
        await asyncio.to_thread(self._post, json.dumps(asdict(note), ensure_ascii=False).encode())

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                if not 200 <= resp.status < 300:
                    raise NotifyError(f"webhook answered {resp.status}")
        except OSError as exc:
            raise NotifyError(f"webhook: {exc}") from exc


def from_spec(spec: str) -> Notifier:
    """``log``, ``file:/path``, ``webhook:https://…``."""
    kind, _, arg = spec.partition(":")
    if kind == "log" and not arg:
        return LogNotifier()
    if kind == "file" and arg:
        return FileNotifier(arg)
    if kind == "webhook" and arg:
        return WebhookNotifier(arg)
    raise ValueError(f"notifier {spec!r}: expected log, file:/path or webhook:https://…")


class Fanout:
    """Every configured notifier, each failure logged and reported, none stopping another."""

    def __init__(self, notifiers: list[Notifier]) -> None:
        self.notifiers = notifiers

    async def send(self, note: Notification) -> list[str]:
        errors = []
        for n in self.notifiers:
            try:
                await n.send(note)
            except Exception as exc:  # noqa: BLE001 - a provider's failure must not stop the others
                log.warning("notifier %s failed for %s: %s", type(n).__name__, note.username, exc)
                errors.append(f"{type(n).__name__}: {exc}")
        return errors
