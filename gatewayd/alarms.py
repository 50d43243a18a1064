"""Active alarms and fire mode: what the gateway must remember across restarts.

Kept in TinyDB (atomic writes). Every change calls ``on_change`` so the uplink republishes the
retained ``{root}/alarms`` and ``{root}/status``. Fire mode, once entered, stays until reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from gatewayd.model import Alarm, Severity, alarm_id
from gatewayd.store import BackgroundWriter

log = logging.getLogger("gatewayd.alarms")


class AlarmManager:
    def __init__(self, db: TinyDB, on_change: Callable[[], None] = lambda: None) -> None:
        # One document holds it all, so every change is one atomic write.
        self._table = db.table("alarms")
        self.on_change = on_change
        self._writer = BackgroundWriter("alarm state", log)
        doc: Mapping[str, Any] = self._table.get(doc_id=1) or {}
        self.alarms: dict[str, Alarm] = {}
        for raw in doc.get("active", []):
            a = Alarm(**raw)
            self.alarms[a.id] = a
        self.fire_mode: bool = bool(doc.get("fire_mode"))
        self.fire_since: float | None = doc.get("fire_since")

    # -- alarms --------------------------------------------------------------------------

    def raise_(
        self, device: str, type_: str, severity: Severity, data: dict[str, Any] | None = None
    ) -> Alarm | None:
        """Raise an alarm; return it if it is new (an active one is left as it is)."""
        aid = alarm_id(device, type_)
        if aid in self.alarms:
            return None
        alarm = Alarm(aid, device, type_, severity, time.time(), None, data or {})
        self.alarms[aid] = alarm
        self._save()
        log.warning("alarm raised: %s (%s)", aid, severity)
        return alarm

    def clear(self, device: str, type_: str) -> bool:
        aid = alarm_id(device, type_)
        if self.alarms.pop(aid, None) is None:
            return False
        self._save()
        log.info("alarm cleared: %s", aid)
        return True

    def ack(self, aid: str, user: str) -> bool:
        alarm = self.alarms.get(aid)
        if alarm is None:
            return False
        self.alarms[aid] = Alarm(
            alarm.id, alarm.device, alarm.type, alarm.severity, alarm.since, user, alarm.data
        )
        self._save()
        log.info("alarm %s acknowledged by %s", aid, user)
        return True

    def active(self) -> list[Alarm]:
        return sorted(self.alarms.values(), key=lambda a: (a.since, a.id))

    # -- fire mode -----------------------------------------------------------------------

    def enter_fire_mode(self) -> bool:
        if self.fire_mode:
            return False
        self.fire_mode = True
        self.fire_since = time.time()
        self._save()
        log.critical("FIRE MODE entered")
        return True

    def reset_fire_mode(self, user: str) -> bool:
        if not self.fire_mode:
            return False
        self.fire_mode = False
        self.fire_since = None
        # Fire alarms leave the list only on reset (the contract): drop them now.
        for aid in [a.id for a in self.alarms.values() if a.type == "gateway.fire_mode"]:
            del self.alarms[aid]
        self._save()
        log.warning("fire mode reset by %s", user)
        return True

    def _save(self) -> None:
        doc = {
            "active": [a.to_json() for a in self.alarms.values()],
            "fire_mode": self.fire_mode,
            "fire_since": self.fire_since,
        }
        self._writer.submit(self._table.upsert, Document(doc, doc_id=1))
        self.on_change()

    def flush(self) -> None:
        """Wait until every change so far was tried (shutdown, tests). Failures were logged."""
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
