"""Report by exception: which of the drivers' state and telemetry goes up the 4G card, and when.

The one place the uplink is thinned (docs/integrator.md says what the platform sees). Drivers
hand every reading to ``DriverContext.publish_state``/``publish_telemetry`` and the rules see
every event; only what leaves for the broker passes here, by what each device's family declares
(``Family.deadbands``, ``Family.readings``) and the site's ``[uplink]`` settings:

- retained state goes at once when a discrete field changes (online, a port's state, a relay,
  a fault, a lock, a door, an alarm), and otherwise at most every ``state_refresh_seconds``: a
  change of readings only is held and sent by a timer, so the retained state is never older
  than that;
- telemetry is rounded to the sensor's resolution; a value goes when it moved past its deadband,
  when its port (its group) has been silent ``telemetry_max_seconds``, or at once, without
  deadband, when the device had an event or an alarm raised or cleared (a rule's threshold
  crossed, a port started or stopped). What one poll brings is one message per device,
  carrying every port that changed.

It never drops an event, never delays a discrete change, and never blocks: one timer for the
earliest state refresh, and one ``call_soon`` that gathers a poll's telemetry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatewayd.config import UplinkConfig
    from gatewayd.family import Deadband, Family

#: The telemetry value that names a part of a device with its own values (a pile's port): such
#: values travel under ``ports`` (a list), the device's own under ``values``.
PART = "port"
NO_BAND: Mapping[str, Deadband] = {}


def discrete(state: Mapping[str, Any], readings: frozenset[str]) -> dict[str, Any]:
    """``state`` without its readings (also inside lists of objects): what must go at once."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in readings or key == "ts":
            continue
        if isinstance(value, list) and readings:
            out[key] = [
                {k: v for k, v in item.items() if k not in readings}
                if isinstance(item, Mapping)
                else item
                for item in value
            ]
        else:
            out[key] = value
    return out


class _Part:
    """What the platform last got of one part of a device (its own values, or one port)."""

    __slots__ = ("fresh", "latest", "sent", "whole_at")

    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}
        #: The newest reading, kept after a flush held it back: an alarm or an event a moment
        #: later (the rules judge the same reading after the driver handed it on) sends it.
        self.latest: dict[str, Any] = {}
        self.fresh = False  # a reading came since the last flush
        self.whole_at = float("-inf")  # monotonic time it last went whole (max silence)


class Exceptions:
    """The thinning: ``send_state(device)`` publishes the device's retained state as it stands;
    ``send_telemetry(device, body)`` one telemetry message. ``family_of`` says what a device
    declares (None: a device of no family, the gateway itself: every change is discrete)."""

    def __init__(
        self,
        settings: UplinkConfig,
        family_of: Callable[[str], Family | None],
        send_state: Callable[[str], None],
        send_telemetry: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._family_of = family_of
        self._send_state = send_state
        self._send_telemetry = send_telemetry
        self._clock = clock
        self._published: dict[str, tuple[dict[str, Any], float]] = {}  # discrete part, when
        self._held: dict[str, float] = {}  # device -> when its held readings must go
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._parts: dict[str, dict[Any, _Part]] = {}
        self._gathering: set[str] = set()  # devices with telemetry waiting for the flush
        self._eager: set[str] = set()  # devices whose next flush ignores deadbands
        self._flush_scheduled = False

    # -- retained state ---------------------------------------------------------------------

    def state_changed(self, device: str, state: Mapping[str, Any]) -> bool:
        """``state`` (the device's whole state) changed: whether to publish it now. If not,
        it is held and goes within ``state_refresh_seconds``."""
        family = self._family_of(device)
        now = self._clock()
        shape = discrete(state, family.readings if family is not None else frozenset())
        last = self._published.get(device)
        refresh = self.settings.state_refresh_seconds
        if last is None or last[0] != shape or device in self._eager or now - last[1] >= refresh:
            self.published(device, state)
            return True
        self._hold(device, last[1] + refresh)
        return False

    def published(self, device: str, state: Mapping[str, Any]) -> None:
        """The device's whole state went up (also on a reconnect)."""
        family = self._family_of(device)
        shape = discrete(state, family.readings if family is not None else frozenset())
        self._published[device] = (shape, self._clock())
        self._held.pop(device, None)

    def forget(self, device: str) -> None:
        self._published.pop(device, None)
        self._held.pop(device, None)
        self._parts.pop(device, None)

    def _hold(self, device: str, due: float) -> None:
        self._held.setdefault(device, due)
        if due < self._timer_at:
            loop = _loop()
            if loop is None:  # not running (start-up, tools): nothing to wait with
                self._held.pop(device)
                self._send_state(device)
                return
            if self._timer is not None:
                self._timer.cancel()
            # loop.time() is the monotonic clock: the same as self._clock in the daemon
            self._timer = loop.call_at(loop.time() + max(0.0, due - self._clock()), self._refresh)
            self._timer_at = due

    def _refresh(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self._clock()
        for device, due in sorted(self._held.items(), key=lambda kv: kv[1]):
            if due <= now:
                self._send_state(device)  # publishes, and calls published()
                self._held.pop(device, None)
        later = list(self._held.items())
        self._held.clear()
        for device, due in later:
            self._hold(device, due)

    # -- telemetry --------------------------------------------------------------------------

    def telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        """One reading's values (a port's, or the device's own): gathered, and sent with the
        rest of the poll's once the drivers' callback is done."""
        family = self._family_of(device)
        bands = family.deadbands if family is not None else NO_BAND
        parts = self._parts.setdefault(device, {})
        key = values.get(PART)
        part = parts.get(key)
        if part is None:
            part = parts[key] = _Part()
        for name, value in values.items():
            band = bands.get(name)
            part.latest[name] = band.rounded(value) if band is not None else value
        part.fresh = True
        self._gathering.add(device)
        self._schedule_flush()

    def eager(self, device: str) -> None:
        """The device had an event, or an alarm of it was raised or cleared: what it has not
        sent of its readings goes now (deadbands aside), and so does its held state."""
        self._eager.add(device)
        self._gathering.add(device)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        loop = _loop()
        if loop is None:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        devices, self._gathering = self._gathering, set()
        eager, self._eager = self._eager, set()
        for device in sorted(devices):
            if device in eager and device in self._held:
                self._held.pop(device)
                self._send_state(device)
            body = self._message(device, device in eager)
            if body is not None:
                self._send_telemetry(device, body)

    def _message(self, device: str, eager: bool) -> dict[str, Any] | None:
        family = self._family_of(device)
        bands = family.deadbands if family is not None else NO_BAND
        silence = self.settings.telemetry_max_seconds
        now = self._clock()
        own: dict[str, Any] = {}
        ports: list[dict[str, Any]] = []
        parts = self._parts.get(device, {})
        for key in sorted(parts, key=lambda k: (k is not None, str(k))):
            part = parts[key]
            if not (part.fresh or eager):
                continue
            part.fresh = False
            whole = now - part.whole_at >= silence
            out = _going(part, bands, whole, eager)
            if not out:
                continue
            if whole:
                part.whole_at = now
            part.sent.update(out)
            if key is None:
                own.update(out)
            else:
                ports.append({PART: key, **{k: v for k, v in out.items() if k != PART}})
        if not own and not ports:
            return None
        body: dict[str, Any] = {"ts": round(time.time(), 3), "values": own}
        if ports:
            body["ports"] = ports
        return body


def _going(part: _Part, bands: Mapping[str, Deadband], whole: bool, eager: bool) -> dict[str, Any]:
    """The values of one part that go now."""
    if whole:
        return dict(part.latest)
    out = {}
    for name, value in part.latest.items():
        if name == PART or name not in part.sent:
            if name != PART:
                out[name] = value
            continue
        band = bands.get(name)
        sent = part.sent[name]
        if (sent != value and eager) or (band.moved(sent, value) if band else sent != value):
            out[name] = value
    return out


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
