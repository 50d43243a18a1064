"""What the DL-B2's notifications mean to the gateway, as data: event types, severities,
payload fields and the retained state each one moves.

Rules and the uplink see only these names (``door.forced``, ``lock: "held_open"``); the byte
layouts stay in ``protocol``. Changing a severity or a state name is a one-line edit here.

The retained state holds only what the lock stated: a STATUS, its advertisement, or a
notification whose meaning fixes the field. An unlock by card, PIN or remote command leaves a
held-open lock held open (datasheet: hold open lasts "until an explicit lock"), so an
``unlocked`` notification does not say where the lock now is; it marks the state ``unsure``
and the link asks the lock for its STATUS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from drivers.ble import events as ev
from drivers.ble import protocol as p
from gatewayd.model import Severity


@dataclass(frozen=True)
class EventSpec:
    type: str
    severity: Severity
    #: record -> event data (the lock's event counter is added to every event)
    data: Callable[[Any], dict[str, Any]] = field(default=lambda r: {})
    #: record -> the retained state it states
    state: Callable[[Any], dict[str, Any]] = field(default=lambda r: {})
    #: record -> True when the lock moved without saying where to (ask it for STATUS)
    unsure: Callable[[Any], bool] = field(default=lambda r: False)


def _user(user: int) -> int | None:
    return user or None  # 0 means "no user" on the wire


#: The unlock method that is the evacuation release: the lock is held open after it.
EVACUATION_RELEASE: Final = 7


def _unlocked_state(r: p.Unlocked) -> dict[str, Any]:
    return {"lock": "held_open"} if r.method == EVACUATION_RELEASE else {}


def _unlocked_unsure(r: p.Unlocked) -> bool:
    # Unlocked, or still held open: only the lock's STATUS tells which.
    return r.method != EVACUATION_RELEASE


# Keyed by record class; ACK is not an event (it answers a command) and STATUS only moves state.
EVENTS: Final[Mapping[type[p.Notification], EventSpec]] = {
    p.Unlocked: EventSpec(
        ev.UNLOCKED,
        "info",
        lambda r: {"method": p.name_of(p.UNLOCK_METHODS, r.method), "user": _user(r.user)},
        _unlocked_state,
        _unlocked_unsure,
    ),
    p.Locked: EventSpec(
        ev.LOCKED,
        "info",
        lambda r: {"method": p.name_of(p.LOCK_METHODS, r.method)},
        lambda r: {"lock": "locked"},
    ),
    p.DoorOpened: EventSpec(ev.OPENED, "info", state=lambda r: {"door": "open"}),
    p.DoorClosed: EventSpec(ev.CLOSED, "info", state=lambda r: {"door": "closed"}),
    p.HeldOpen: EventSpec(ev.HELD_OPEN, "warning", lambda r: {"seconds": r.seconds}),
    p.Forced: EventSpec(ev.FORCED, "critical", state=lambda r: {"door": "open"}),
    p.AccessDenied: EventSpec(
        ev.ACCESS_DENIED,
        "warning",
        lambda r: {"method": p.name_of(p.UNLOCK_METHODS, r.method), "user": _user(r.user)},
    ),
    p.OnBattery: EventSpec(
        ev.ON_BATTERY,
        "warning",
        lambda r: {"battery_mv": r.battery_mv},
        lambda r: {"mains": False, "battery_mv": r.battery_mv},
    ),
    # An opened cover on an entrance controller is how such locks are bypassed.
    p.Tamper: EventSpec(ev.TAMPER, "critical"),
}


def status_state(r: p.Status) -> dict[str, Any]:
    return {
        "lock": p.name_of(p.LOCK_STATES, r.lock),
        "door": p.name_of(p.DOOR_STATES, r.door),
        "battery_mv": r.battery_mv,
    }


def advert_state(a: p.AdvertState) -> dict[str, Any]:
    return {
        "lock": p.name_of(p.LOCK_STATES, a.lock),
        "door": p.name_of(p.DOOR_STATES, a.door),
        "battery_pct": a.battery_pct,
    }


#: Commands whose outcome only the lock's STATUS confirms (an ACK says the lock took the
#: command, the STATUS where it ended up): op -> (the lock state that confirms it, the error
#: code when the STATUS says otherwise).
CONFIRMED: Final[Mapping[p.Op, tuple[str, str]]] = {
    p.Op.LOCK: ("locked", "not_locked"),
    p.Op.HOLD_OPEN: ("held_open", "not_released"),
}
