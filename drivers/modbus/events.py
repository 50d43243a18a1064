"""Every event type of the charging-pile family, written once (STYLE §13): the driver, the
charger rules and the family descriptor import these names."""

from __future__ import annotations

KIND = "charger"  # the family's device kind (rules name it without importing the family)

SAMPLE = "charger.sample"  # readings for the rules; never published
PORT_STARTED = "charger.port_started"
PORT_FULL = "charger.port_full"
PORT_STOPPED = "charger.port_stopped"
PORT_FAULT = "charger.port_fault"
PORT_CUT = "charger.port_cut"
CUT_FAILED = "charger.cut_failed"
RELAY_WELDED = "charger.relay_welded"
STATUS = "charger.status"
ONLINE = "charger.online"
OFFLINE = "charger.offline"
# Alarm types of the charger rules:
OVERHEAT = "charger.overheat"
CABINET_OVERHEAT = "charger.cabinet_overheat"
OVERPOWER = "charger.overpower"
SENSOR_FAULT = "charger.sensor_fault"
#: The charger rule that cuts for heat: a cut with this origin is a sign of fire
#: (rules/fire.py counts it as confirming a smoke alarm).
OVERHEAT_RULE = "charger_overheat"

SMOKE_INPUT = "smoke_input"  # the status bit a pile's external smoke detector sets
