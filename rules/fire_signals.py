"""When a fire is confirmed: a second, independent signal (GB 50116-2013 §4.1.6).

A signal is a device and what it sensed (``FireSignal.device``, ``.what``): two signals are
independent when they come from two devices, or from one device sensing two things (the heat
alarm of a combined smoke/heat detector after its smoke alarm). A detector repeats its alarm
every 30 s with a new SEQ while smoke persists, and anyone can record and replay a legacy
detector's frames: every repeat of one signal is that same signal, only seen again, never a
second one. Two signals confirm the fire when the earlier was seen at most ``window`` seconds
before the later (a repeat keeps a signal fresh), or its device still reports the fire (a
pile's smoke input is a level, said once when it sets).

Pure: time comes from the events.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gatewayd.family import FireSignal


@dataclass(frozen=True)
class Seen:
    """A signal as the confirmation remembers it."""

    device: str
    what: str  # "" for a device known only to report the fire still (a part of fire mode)
    ts: float


class Signals:
    """The signals of the fire episode, and which of them confirm it."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: dict[tuple[str, str], float] = {}  # (device, what) -> when last seen

    def note(self, signal: FireSignal, ts: float, reporting: Collection[str]) -> Seen | None:
        """Remember ``signal`` seen at ``ts``; return the other signal that, with it, confirms
        the fire (None: it does not). ``reporting``: the devices that still report the fire."""
        key = (signal.device, signal.what)
        self._last = {k: t for k, t in self._last.items() if ts - t <= self.window}
        other = next(
            (Seen(d, w, t) for (d, w), t in sorted(self._last.items()) if (d, w) != key), None
        )
        if other is None:
            other = next((Seen(d, "", ts) for d in sorted(reporting) if d != signal.device), None)
        self._last[key] = max(ts, self._last.get(key, ts))
        return other

    def clear(self) -> None:
        self._last.clear()
