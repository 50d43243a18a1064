"""Every event type of the electrical family, written once (STYLE §13): the session, the
family descriptor and the rules import these names."""

from __future__ import annotations

KIND = "electrical"  # the family's device kind (its rules name it without importing it)
#: Why a command that would re-energise a circuit is refused.
MANUAL_ONLY_WHY = (
    "a tripped breaker is switched on by hand at the box; nothing re-closes it remotely"
)

LEAKAGE_ALARM = "electrical.leakage_alarm"
OVERTEMP_ALARM = "electrical.overtemp_alarm"
FAULT = "electrical.fault"
TRIPPED = "electrical.tripped"
ONLINE = "electrical.online"
OFFLINE = "electrical.offline"
ALARM_OVER = "electrical.alarm_over"  # a channel's value fell back below its threshold

#: The alarm events, by the channel type that raises each.
ALARMS = (LEAKAGE_ALARM, OVERTEMP_ALARM)
