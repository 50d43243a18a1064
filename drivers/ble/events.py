"""Every event type of the door-lock family, written once (STYLE §13)."""

from __future__ import annotations

UNLOCKED = "door.unlocked"
LOCKED = "door.locked"
OPENED = "door.opened"
CLOSED = "door.closed"
HELD_OPEN = "door.held_open"
FORCED = "door.forced"
ACCESS_DENIED = "door.access_denied"
ON_BATTERY = "door.on_battery"
TAMPER = "door.tamper"
# Said by the gateway after a fire linkage action the lock confirmed:
RELEASED = "door.released"
RESTORED = "door.restored"
# Alarm types raised while a fire linkage action fails:
RELEASE_FAILED = "door.release_failed"
RELOCK_FAILED = "door.relock_failed"
