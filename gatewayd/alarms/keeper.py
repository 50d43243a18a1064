"""Where the alarm book lives: on the SD card, and in the hands of the people who answer it.

``AlarmKeeper`` opens the persisted state (``gatewayd.store``: two checksummed copies), builds
the book from it and writes every change back on a background thread. It decides what a
damaged card means: if no copy of the state could be read (or records in it could not), the
gateway's memory of alarms and fire mode is gone, so ``gateway.state_lost`` is raised
(critical, latched) and the rules switch every charger off until a person turns ports on.
It watches the stores the gateway must write (``check_storage``): any that fails raises
``gateway.storage_failed`` until it writes again. And it is where people's acks and resets
arrive, whoever sent them (the platform, the local control socket).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gatewayd.alarms.book import AlarmBook, Refusal
from gatewayd.alarms.catalogue import FIRE_MODE, STATE_LOST, STORAGE_FAILED, Catalogue
from gatewayd.model import Alarm, alarm_id
from gatewayd.store import BackgroundWriter, open_db

log = logging.getLogger("gatewayd.alarms")

RETRY_SECONDS = 30.0  # between attempts to write again to a failing store
TABLE = "alarms"


class AlarmKeeper:
    def __init__(
        self,
        data_dir: str,
        gateway_id: str,
        catalogue: Catalogue,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.gateway_id = gateway_id
        self.db, report = open_db(data_dir)
        self._table = self.db.table(TABLE)
        self._writer = BackgroundWriter("alarm state", log)
        saved: Mapping[str, Any] | None = None
        try:
            saved = self._table.get(doc_id=1)
        except (ValueError, TypeError, AttributeError, KeyError):  # a document TinyDB can't use
            report.lost = True
        self.book = AlarmBook(
            gateway_id, catalogue, saved, self._persist, on_change, defer=after_this_step
        )
        self.lost = report.lost or self.book.unreadable > 0
        self.damaged = list(report.damaged)
        self._retry_at = 0.0
        if self.damaged and not self.lost:
            self.book.save()  # the good copy is rewritten over the damaged one at once

    def start(self) -> Alarm | None:
        """Raise ``gateway.state_lost`` if the state could not be read: call once, at start,
        when the daemon can act on it. Returns the alarm when raised."""
        if not self.lost:
            return None
        log.critical(
            "the gateway's state (alarms, fire mode) was lost: every charger is cut until a "
            "person turns its ports on; reset %s/%s once the house is checked",
            self.gateway_id,
            STATE_LOST,
        )
        self.book.raise_(self.gateway_id, STATE_LOST, {"damaged": self.damaged})
        self.book.clear(self.gateway_id, STATE_LOST)  # nothing to wait for: awaits a reset
        return self.book.get(alarm_id(self.gateway_id, STATE_LOST))

    # -- storage health --------------------------------------------------------------------

    @property
    def store_error(self) -> str | None:
        return self._writer.error if self._writer.failed else None

    def check_storage(
        self,
        errors: Mapping[str, str | None],
        retry: Iterable[Callable[[], None]] = (),
        now: float | None = None,
    ) -> None:
        """``errors``: store name -> why it cannot write (None when it can). Raises or clears
        the parts of ``gateway.storage_failed``; while any fails, asks the failing stores to
        try again every ``RETRY_SECONDS`` (``retry``; each is a no-op for a healthy store)."""
        errors = {**errors, "state": self.store_error}
        failing = {store: error for store, error in errors.items() if error is not None}
        for store in errors:
            if store in failing:
                self.book.raise_(self.gateway_id, STORAGE_FAILED, failing, part=store)
            else:
                self.book.clear(self.gateway_id, STORAGE_FAILED, part=store)
        if not failing:
            return
        now = time.monotonic() if now is None else now
        if now < self._retry_at:
            return
        self._retry_at = now + RETRY_SECONDS
        if self._writer.failed:
            self.book.save()
        for again in retry:
            again()

    def _persist(self, doc: dict[str, Any]) -> None:
        self._writer.submit(self._table.upsert, _document(doc))

    # -- other small documents the gateway remembers -----------------------------------------

    def recall(self, table: str) -> Any:
        """The value last remembered under ``table`` (None: never, or unreadable)."""
        try:
            doc = self.db.table(table).get(doc_id=1)
        except (ValueError, TypeError, AttributeError, KeyError):
            return None
        return doc.get("value") if isinstance(doc, dict) else None

    def remember(self, table: str, value: Any) -> None:
        if self.recall(table) != value:
            self._writer.submit(self.db.table(table).upsert, _document({"value": value}))

    # -- people ------------------------------------------------------------------------------

    def ack(self, aid: str, user: str, note: str | None = None) -> Alarm:
        alarm = self.book.ack(aid, user)
        log.info("alarm %s acknowledged by %s%s", aid, user, _noted(note))
        return alarm

    def reset(
        self, aid: str, user: str, permit: Callable[[Alarm], str | None], note: str | None = None
    ) -> Alarm:
        """Take a latched alarm off the list, if its condition is over (the book's own record)
        and ``permit`` (the rules, which know the world) agrees. Raises ``Refusal``."""
        alarm = self.book.check_reset(aid)
        refused = permit(alarm)
        if refused:
            raise Refusal("forbidden", refused)
        self.book.reset(aid)
        what = "fire mode" if alarm.type == FIRE_MODE else f"alarm {aid}"
        log.warning("%s reset by %s%s", what, user, _noted(note))
        return alarm

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every change so far was tried (shutdown, tests)."""
        self.book.flush()
        self._writer.flush()

    def close(self) -> None:
        self.book.flush()
        self._writer.close()
        self.db.close()


def after_this_step(then: Callable[[], None]) -> None:
    """Call ``then`` once the event loop's current step is over (at once with no loop)."""
    try:
        asyncio.get_running_loop().call_soon(then)
    except RuntimeError:
        then()


def _noted(note: str | None) -> str:
    """A person's note for a log line: ``repr`` keeps anything it holds on this one line."""
    return f" (note: {note!r})" if note else ""


def _document(doc: dict[str, Any]) -> Any:
    from tinydb.table import Document

    return Document(doc, doc_id=1)
