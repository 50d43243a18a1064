"""Interconnection (GB 20517-2025 §5.12): in a fire every detector of the house sounds.

A rev B receiver (firmware 2.0 and later: ``profile.REV_B_FIRMWARE``) takes SOUND ALL (0x84,
u8 seconds): every paired detector sounds for that long, and none reports an alarm of its own,
so nothing loops back. The fire rule asks each detector to ``sound`` (``SmokeFamily
.fire_actions``) and the driver turns the whole batch into one frame per receiver; HUSH ALL
(0x82) silences them at the fire's reset (``after_fire``: ``hush``).

Timing: each SOUND ALL asks for ``SOUND_SECONDS`` (60 s) and is sent again every
``REPEAT_SECONDS`` (30 s) while the fire lasts, so one frame the radio loses leaves no silent
gap (the next lands 30 s before the sounders would stop), the same rhythm as a detector's own
alarm repeats (every 30 s, datasheet). Not "0 = until a hush all": a gateway that dies in a
fire must not leave every sounder in the building screaming until someone finds the receiver;
they stop within 60 s, while the detector in smoke keeps sounding by itself. A receiver
replugged (or a gateway restarted) during the fire gets SOUND ALL at its first status frame,
and a driver restarted mid-fire (a reload) starts again when the fire rule asks once more
(every minute while fire mode lasts: ``gatewayd.family.REASSERTED``).

A rev A receiver ignores 0x84: it is never sent one, and its state says so
(``sound_all: "unsupported"``), for `gatewayd status` and the platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drivers.srb433 import profile
from drivers.srb433.family import HUSH, SOUND
from gatewayd.errors import DeviceError, TransientError
from gatewayd.model import Action

HUSH_ALL, SOUND_ALL = 0x82, 0x84
SOUND_SECONDS = 60
REPEAT_SECONDS = 30.0


class Interconnect:
    """The receiver's sounding state; ``send(type, payload)`` writes a frame to it (raising
    ``TransientError`` while it is not connected), ``publish(**changes)`` its state."""

    def __init__(
        self,
        send: Callable[[int, bytes], object],
        publish: Callable[..., None],
        log: logging.Logger,
        bus: str,
    ) -> None:
        self._send = send
        self._publish = publish
        self._log = log
        self._bus = bus
        self.firmware: int | None = None
        self.sounding = False  # a fire is on: SOUND ALL is repeated
        self._sent_since_status = False

    @property
    def rev_b(self) -> bool:
        return self.firmware is not None and profile.revision(self.firmware) == "B"

    def state(self) -> dict[str, Any]:
        """What the receiver's gateway state says of interconnection."""
        if self.firmware is None:
            return {}
        shown = "sounding" if self.sounding else "ready"
        return {
            "revision": profile.revision(self.firmware),
            "sound_all": shown if self.rev_b else "unsupported",
        }

    def on_status(self, firmware: int) -> None:
        """The receiver said its firmware (every answer to a PING): a new or replugged one
        in a fire sounds at once."""
        known = self.firmware
        self.firmware = firmware
        if known != firmware:
            self._publish(firmware=firmware, **self.state())
        if self.sounding and self.rev_b and not self._sent_since_status:
            self._sound_all()

    def on_connection(self) -> None:
        self._sent_since_status = False

    async def run(self) -> None:
        """Repeat SOUND ALL while the fire lasts."""
        while True:
            await asyncio.sleep(REPEAT_SECONDS)
            if self.sounding and self.rev_b:
                try:
                    self._sound_all()
                except TransientError as exc:
                    self._log.warning("bus %s: SOUND ALL not sent: %s", self._bus, exc)

    def execute(self, actions: Sequence[Action]) -> Mapping[str, Any]:
        """Every detector's ``sound`` (or ``hush``) of one batch: one frame for them all."""
        names = {a.name for a in actions}
        if names - {SOUND, HUSH} or len(names) != 1:
            raise DeviceError(actions[0].device, "unsupported", f"not one of sound, hush: {names}")
        if names == {HUSH}:
            was, self.sounding = self.sounding, False
            self._send(HUSH_ALL, b"")  # also silences a sound-all
            self._publish(**self.state())
            return {"hush_all": True, "was_sounding": was}
        if self.firmware is None:
            raise TransientError(f"receiver {self._bus}", "firmware not known yet (no status)")
        again = self.sounding and self._sent_since_status
        self.sounding = True
        if not self.rev_b:
            self._publish(**self.state())
            version = profile.version(self.firmware)
            return {"sound_all": "unsupported", "revision": "A", "firmware": version}
        if not again:  # the fire rule asks again every minute: the repeats are ours
            self._sound_all()
        self._publish(**self.state())
        return {"sound_all": "sounding", "seconds": SOUND_SECONDS, "repeat": REPEAT_SECONDS}

    def _sound_all(self) -> None:
        self._send(SOUND_ALL, bytes((SOUND_SECONDS,)))
        self._sent_since_status = True
