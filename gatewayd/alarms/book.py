"""The alarm book: the one owner of the alarm lifecycle, and so of fire mode.

Lifecycle (ISA-18.2 / IEC 62682; docs/alarms.md has the diagram):

    raise ──▶ ACTIVE, unacknowledged ──ack──▶ ACTIVE, acknowledged
                 │   ▲  a new occurrence (a part not active before, or the      │
                 │   └─ condition back after clearing) re-raises: unacked ◀──┘
                 │ condition over
                 ▼
       by-condition types: leave the list.   latched types: CLEARED, awaiting reset
                                              ──reset by a person──▶ leave the list

A latched alarm cannot be reset while its condition is present (the caller also asks the
rules, which know the world better: ``Engine.permit_reset``). Fire mode *is* the
``gateway.fire_mode`` alarm: on while it is on the list, over when a person resets it.

The book keeps everything in memory and hands each new picture to ``persist`` (a background
writer: the event loop never waits for the SD card) and tells ``on_change``, both through
``defer``: after the current step of the event loop, so that a cut the same reading caused
(already queued by then) reaches the wire before the book is serialised, and the changes of one
event make one write and one message. It never raises for what was persisted: records it cannot
read are counted in ``unreadable``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from gatewayd.alarms.catalogue import FIRE_MODE, Catalogue
from gatewayd.errors import GatewayError
from gatewayd.model import Alarm, alarm_id

log = logging.getLogger("gatewayd.alarms")

FORMAT = 2  # the persisted document's version


class Refusal(GatewayError):
    """An ack or reset that cannot be done; ``code`` is a command result code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class AlarmBook:
    def __init__(
        self,
        gateway_id: str,
        catalogue: Catalogue,
        saved: Mapping[str, Any] | None = None,
        persist: Callable[[dict[str, Any]], None] = lambda _doc: None,
        on_change: Callable[[], None] = lambda: None,
        logger: logging.Logger = log,
        defer: Callable[[Callable[[], None]], None] = lambda then: then(),
    ) -> None:
        self.gateway_id = gateway_id
        self.log = logger  # a drill's book says nothing: "FIRE MODE entered" would be a lie
        self.catalogue = catalogue
        self.persist = persist
        self.on_change = on_change
        self.defer = defer
        self._dirty = False  # a change not yet handed to persist and on_change
        self.alarms: dict[str, Alarm] = {}
        self.unreadable = 0  # persisted records that could not be read back
        self.fire_id = alarm_id(gateway_id, FIRE_MODE)
        if saved:
            self._restore(saved)

    # -- what others read ----------------------------------------------------------------

    @property
    def fire_mode(self) -> bool:
        return self.fire_id in self.alarms

    @property
    def fire_since(self) -> float | None:
        fire = self.alarms.get(self.fire_id)
        return fire.since if fire is not None else None

    def active(self) -> list[Alarm]:
        """Every alarm on the list (active or awaiting reset), oldest first."""
        return sorted(self.alarms.values(), key=lambda a: (a.since, a.id))

    def get(self, aid: str) -> Alarm | None:
        return self.alarms.get(aid)

    # -- conditions ----------------------------------------------------------------------

    def raise_(
        self,
        device: str,
        type_: str,
        data: Mapping[str, Any] | None = None,
        part: str | None = None,
        now: float | None = None,
    ) -> Alarm | None:
        """The condition of ``type_`` is present at ``device`` (at ``part`` of it). Returns the
        alarm when this is news (new, or re-raised); None when it was already known."""
        now = time.time() if now is None else now
        spec = self.catalogue[type_]
        aid = alarm_id(device, type_)
        old = self.alarms.get(aid)
        data = dict(data or {})
        if old is None:
            alarm = Alarm(
                aid, device, type_, spec.severity, now, None, data, spec.latched, True,
                {part: True} if part is not None else {}, now,
            )  # fmt: skip
            self._put(alarm)
            if type_ == FIRE_MODE:
                self.log.critical("FIRE MODE entered%s", _at(part))
            else:
                self.log.warning("alarm raised: %s%s (%s)", aid, _at(part), spec.severity)
            return alarm
        parts = dict(old.parts)
        news = not old.active or (part is not None and not parts.get(part, False))
        if part is not None:
            parts[part] = True
        if news:
            alarm = dataclasses.replace(
                old, data=data, active=True, parts=parts, updated=now, count=old.count + 1,
                acked_by=None, acked_at=None, cleared_at=None,
            )  # fmt: skip
            self._put(alarm)
            self.log.warning("alarm raised again: %s%s (%s)", aid, _at(part), spec.severity)
            return alarm
        if data != old.data and _material(data, old.data):
            self._put(dataclasses.replace(old, data=data, parts=parts))
        return None

    def clear(
        self, device: str, type_: str, part: str | None = None, now: float | None = None
    ) -> bool:
        """The condition is over (at ``part``; everywhere when None). True when that changed
        the book."""
        aid = alarm_id(device, type_)
        old = self.alarms.get(aid)
        if old is None or not old.active:
            return False
        parts = dict(old.parts)
        if part is not None:
            if not parts.get(part, False):
                return False
            parts[part] = False
        else:
            parts = dict.fromkeys(parts, False)
        if any(parts.values()):
            self._put(dataclasses.replace(old, parts=parts))
            return True
        if not old.latched:
            del self.alarms[aid]
            self._changed()
            self.log.info("alarm cleared: %s", aid)
            return True
        now = time.time() if now is None else now
        self._put(dataclasses.replace(old, active=False, parts=parts, cleared_at=now))
        self.log.info("alarm %s: condition over, awaiting reset", aid)
        return True

    # -- what people do ------------------------------------------------------------------

    def ack(self, aid: str, user: str, now: float | None = None) -> Alarm:
        alarm = self.alarms.get(aid)
        if alarm is None:
            raise Refusal("invalid", f"no active alarm {aid!r}")
        if alarm.acked_by != user:
            now = time.time() if now is None else now
            alarm = dataclasses.replace(alarm, acked_by=user, acked_at=now)
            self._put(alarm)
        return alarm

    def check_reset(self, aid: str) -> Alarm:
        """The alarm if a person may reset it now, else ``Refusal`` saying why."""
        alarm = self.alarms.get(aid)
        if alarm is None:
            raise Refusal("invalid", f"no active alarm {aid!r}")
        spec = self.catalogue[alarm.type]
        if not alarm.latched:
            raise Refusal("forbidden", f"{aid} is not reset by hand: it clears {spec.clears}")
        if alarm.active:
            where = alarm.active_parts
            detail = f" ({spec.part} {', '.join(where)})" if where else ""
            raise Refusal("forbidden", f"{aid} is still active{detail}: reset it once it is over")
        return alarm

    def reset(self, aid: str) -> Alarm:
        """Take a latched alarm whose condition is over off the list (``check_reset`` first)."""
        alarm = self.check_reset(aid)
        del self.alarms[aid]
        self._changed()
        return alarm

    # -- persistence ---------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "alarms": [dataclasses.asdict(a) for a in self.alarms.values()],
        }

    def save(self) -> None:
        """Hand the current picture to ``persist`` again (after storage came back)."""
        self.persist(self.document())

    def _put(self, alarm: Alarm) -> None:
        self.alarms[alarm.id] = alarm
        self._changed()

    def _changed(self) -> None:
        if not self._dirty:
            self._dirty = True
            self.defer(self.flush)

    def flush(self) -> None:
        """Hand the changes so far to ``persist`` and ``on_change`` now (the deferred call,
        and shutdown)."""
        if self._dirty:
            self._dirty = False
            self.persist(self.document())
            self.on_change()

    def _restore(self, saved: Mapping[str, Any]) -> None:
        records = saved.get("alarms", saved.get("active", []))
        if not isinstance(records, list):
            records, self.unreadable = [], 1
        for raw in records:
            alarm = self._record(raw)
            if alarm is None:
                self.unreadable += 1
                continue
            self.alarms[alarm.id] = alarm
        # Before alarms had a lifecycle, fire mode was a flag beside them.
        if saved.get("fire_mode") is True and self.fire_id not in self.alarms:
            since = saved.get("fire_since")
            since = float(since) if isinstance(since, int | float) else time.time()
            spec = self.catalogue[FIRE_MODE]
            self.alarms[self.fire_id] = Alarm(
                self.fire_id, self.gateway_id, FIRE_MODE, spec.severity, since,
                latched=True, active=False, updated=since,
            )  # fmt: skip
        if self.unreadable:
            log.error("%d persisted alarm record(s) could not be read", self.unreadable)

    def _record(self, raw: Any) -> Alarm | None:
        """One persisted alarm, as far as it can be trusted: fields this version does not
        know are ignored; severity and latching come from today's catalogue."""
        if not isinstance(raw, dict):
            return None
        device, type_ = raw.get("device"), raw.get("type")
        since = _time_or(raw.get("since"), None)
        if not (isinstance(device, str) and isinstance(type_, str) and since is not None):
            return None
        spec = self.catalogue[type_]
        acked_by = raw.get("acked_by")
        data = raw.get("data")
        parts = raw.get("parts")
        parts = {str(p): bool(on) for p, on in parts.items()} if isinstance(parts, dict) else {}
        active = raw.get("active", True)
        return Alarm(
            id=alarm_id(device, type_),
            device=device,
            type=type_,
            severity=spec.severity,
            since=since,
            acked_by=acked_by if isinstance(acked_by, str) else None,
            data=data if isinstance(data, dict) else {},
            latched=spec.latched,
            active=bool(active) if isinstance(active, bool) else True,
            parts=parts,
            updated=_time_or(raw.get("updated"), None) or since,
            count=raw["count"] if isinstance(raw.get("count"), int) else 1,
            acked_at=_time_or(raw.get("acked_at"), None),
            cleared_at=_time_or(raw.get("cleared_at"), None),
        )


def _at(part: str | None) -> str:
    return f" at {part}" if part is not None else ""


def _material(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether new data is worth a write: a different set of keys or any non-numeric change
    (a temperature creeping up by 0.1 °C on every re-cut is not)."""
    if new.keys() != old.keys():
        return True
    return any(new[k] != old[k] and not (_is_num(new[k]) and _is_num(old[k])) for k in new)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_time(v: Any) -> bool:
    return _is_num(v) and math.isfinite(v) and 0 <= v < 2**53


def _time_or(v: Any, default: float | None) -> float | None:
    return float(v) if _is_time(v) else default
