"""What one DL-B2 has told the gateway, turned into events and retained state as it arrives:
its advertisements, its notifications, its STATUS answers.

The retained state only ever holds what the lock itself stated (see ``profile``): when a
notification moves the lock without saying where to, ``unsure`` is raised until the next
STATUS, and the link asks for one. No I/O here beyond the driver context's cheap calls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bleak.backends.scanner import AdvertisementData

from drivers.ble import profile
from drivers.ble import protocol as p
from gatewayd.driver import DriverContext
from gatewayd.model import Event

RSSI_STEP = 6  # dB of change before RSSI is republished: it jitters with every advert


class LockReport:
    def __init__(self, device: str, ctx: DriverContext) -> None:
        self.device = device
        self.ctx = ctx
        self.counter: int | None = None  # low byte of the lock's event counter, last known
        self.heard_at = 0.0  # Unix time of the last advert or notification
        self.malformed = 0
        #: The lock moved without saying where to; cleared by its next STATUS.
        self.unsure = False
        self._published: dict[str, Any] = {}
        self._last_mfr: bytes | None = None

    def publish(self, state: Mapping[str, Any]) -> None:
        changed = {k: v for k, v in state.items() if self._published.get(k, object()) != v}
        if changed:
            self._published.update(changed)
            self.ctx.publish_state(self.device, changed)

    def advert(self, adv: AdvertisementData, connected: bool) -> bool:
        """One advertisement; True when its event counter says events were missed."""
        self.heard_at = time.time()
        # bleak reports every Device1 property change as an advertisement, replaying the
        # last manufacturer data it has; only new bytes say anything new about the lock.
        raw = adv.manufacturer_data.get(p.COMPANY_ID)
        fresh, self._last_mfr = raw != self._last_mfr, raw
        try:
            state = p.parse_manufacturer_data(adv.manufacturer_data) if fresh else None
        except p.FrameError:
            state = None
        moved = False
        if not connected and state is not None:
            moved = self.counter is not None and state.counter != self.counter
            self.publish(profile.advert_state(state))
        last = self._published.get("rssi")
        if last is None or abs(adv.rssi - last) >= RSSI_STEP:
            self.publish({"rssi": adv.rssi})
        return moved

    def notification(self, data: bytes) -> p.Ack | p.Status | None:
        """One EVENTS notification: events and state published; an ACK or a STATUS is
        returned for the link to hand to the command waiting for it."""
        self.heard_at = time.time()
        try:
            record = p.parse_event(data)
        except p.FrameError as exc:
            self.malformed += 1
            if self.malformed <= 3 or self.malformed % 100 == 0:  # no log floods
                self.ctx.log.warning("%s: ignored a malformed notification: %s", self.device, exc)
            return None
        if isinstance(record, p.Ack):
            return record
        self.counter = record.seq & 0xFF
        if isinstance(record, p.Status):
            self.unsure = False
            self.publish(profile.status_state(record))
            return record
        spec = profile.EVENTS[type(record)]
        self.ctx.emit(
            Event(
                self.device, spec.type, spec.severity, {**spec.data(record), "counter": record.seq}
            )
        )
        self.publish(spec.state(record))
        if spec.unsure(record):
            self.unsure = True
        return None
