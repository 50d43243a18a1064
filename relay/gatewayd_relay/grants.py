"""The grant model: may this person open this door now? One pure function over the stored
rows and a time, so the rule is read in one place and tested without I/O.

A grant is valid from ``valid_from`` to ``valid_until`` (move-in to move-out; a visitor pass is
a few hours), optionally only within daily ``hours`` in the relay's time zone, optionally at
most ``max_opens`` times. A revoked person or grant is refused at once: the check runs on every
tap, against the database, so a revocation takes effect on the next tap in every process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from gatewayd_relay.models import Grant, Person

HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
#: What the gateway accepts as a command's `user` (docs/integrator.md), kept a little shorter.
HANDLE = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")


class Refusal(StrEnum):
    """Why the relay refused a tap; each has words for the tenant in i18n."""

    REVOKED = "revoked"
    NO_GRANT = "no_grant"
    NOT_YET = "not_yet"
    EXPIRED = "expired"
    OUTSIDE_HOURS = "outside_hours"
    USED_UP = "used_up"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None


ALLOW = Decision(True)


def parse_hours(text: str) -> tuple[int, int] | None:
    """``"07:00-22:00"`` as minutes of the day (start, end); None for any time."""
    if not text:
        return None
    m = HOURS.match(text)
    if not m:
        raise ValueError(f"hours {text!r}: expected HH:MM-HH:MM")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    if start == end:
        raise ValueError(f"hours {text!r}: start and end are the same")
    return start, end


def within_hours(text: str, now: float, tz: ZoneInfo) -> bool:
    window = parse_hours(text)
    if window is None:
        return True
    local = datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute
    start, end = window
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps midnight


def decide(person: Person | None, grant: Grant | None, now: float, tz: ZoneInfo) -> Decision:
    if person is None or person.revoked_at is not None:
        return Decision(False, Refusal.REVOKED)
    if grant is None:
        return Decision(False, Refusal.NO_GRANT)
    if grant.revoked_at is not None:
        return Decision(False, Refusal.REVOKED)
    if now < grant.valid_from:
        return Decision(False, Refusal.NOT_YET)
    if grant.valid_until is not None and now >= grant.valid_until:
        return Decision(False, Refusal.EXPIRED)
    if not within_hours(grant.hours, now, tz):
        return Decision(False, Refusal.OUTSIDE_HOURS)
    if grant.max_opens is not None and grant.opens >= grant.max_opens:
        return Decision(False, Refusal.USED_UP)
    return ALLOW
