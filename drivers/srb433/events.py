"""Every event type of the smoke family, written once: the driver, the smoke rule and the
family descriptor import these names (STYLE §13: a string in two modules has no owner)."""

from __future__ import annotations

KIND = "smoke"  # the family's device kind (rules name it without importing the family)
#: A detector model's heartbeat period when its model is unknown.
DEFAULT_HEARTBEAT_SECONDS = 3600.0

ALARM = "smoke.alarm"
HEAT_ALARM = "smoke.heat_alarm"
CLEARED = "smoke.cleared"
TEST = "smoke.test"
LOW_BATTERY = "smoke.low_battery"
TAMPER = "smoke.tamper"
FAULT = "smoke.fault"
HEARTBEAT = "smoke.heartbeat"
HUSHED = "smoke.hushed"
# Said by the smoke rule, not by a detector:
MISSING = "smoke.missing"
RETURNED = "smoke.returned"
ALARM_ENDED = "smoke.alarm_ended"
TEST_FAILED = "smoke.test_failed"  # an alarm type only
UNSUPERVISED = "smoke.unsupervised"  # an alarm type only: a detector that sends no heartbeat
# Said by the receiver's driver about the receiver (device = the gateway):
RECEIVER_OFFLINE = "gateway.receiver_offline"
RECEIVER_ONLINE = "gateway.receiver_online"
DETECTOR_PAIRED = "gateway.detector_paired"
UNKNOWN_DETECTOR = "gateway.unknown_detector"

FIRE = (ALARM, HEAT_ALARM)  # what a detector says of a fire
#: What detectors themselves send (every other type here is said about them, or the receiver).
FROM_DETECTORS = (ALARM, HEAT_ALARM, CLEARED, TEST, LOW_BATTERY, TAMPER, FAULT, HEARTBEAT, HUSHED)
