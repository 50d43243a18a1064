"""The recent happenings `gatewayd events --since` shows: what the daemon saw since it started,
the last ``HISTORY`` events at most, in memory only (the outbox is the durable record, for
the platform). An event listener like any other: quick, never raising.

And the filter an `events` request asks for (``since``, ``devices``, ``types``), checked
here once so that a malformed one is refused before anything streams.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewayd.control.wire import INVALID, Refusal
from gatewayd.model import Event, is_internal

HISTORY = 2000  # events kept; at a busy house's pace, several hours
MAX_FILTER = 64  # device ids or type patterns in one request


@dataclass(frozen=True)
class EventFilter:
    since: float | None = None
    devices: frozenset[str] = frozenset()
    types: tuple[str, ...] = ()
    follow: bool = True

    @classmethod
    def of(cls, request: Mapping[str, Any]) -> EventFilter:
        since = request.get("since")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int | float) or since < 0
        ):
            raise Refusal(INVALID, "since: expected a Unix time")
        follow = request.get("follow", True)
        if not isinstance(follow, bool):
            raise Refusal(INVALID, "follow: expected true or false")
        return cls(
            float(since) if since is not None else None,
            frozenset(_strings(request, "devices")),
            tuple(_strings(request, "types")),
            follow,
        )

    def __call__(self, event: Event) -> bool:
        if self.devices and event.device not in self.devices:
            return False
        return not self.types or any(fnmatch.fnmatchcase(event.type, t) for t in self.types)


def _strings(request: Mapping[str, Any], key: str) -> list[str]:
    value = request.get(key) or []
    if (
        not isinstance(value, list)
        or len(value) > MAX_FILTER
        or not all(isinstance(v, str) and 0 < len(v) <= 128 for v in value)
    ):
        raise Refusal(INVALID, f"{key}: expected a list of at most {MAX_FILTER} names")
    return value


class EventHistory:
    def __init__(self, size: int = HISTORY) -> None:
        self.events: deque[Event] = deque(maxlen=size)

    def __call__(self, event: Event) -> None:
        if not is_internal(event.type):
            self.events.append(event)

    def since(self, when: float, wanted: EventFilter) -> list[Event]:
        return [e for e in self.events if e.ts >= when and wanted(e)]
