"""Cuts that did not happen, and what may switch a port back on.

A cut the pile did not carry out is the most dangerous charger state there is: the gateway
decided a port must be off and it is not. A relay that acknowledged and stayed closed
(``charger.relay_welded``) or a cut that got no answer or failed (``charger.cut_failed``, the
runtime's ``gateway.action_failed``) raises a latched, critical alarm per port, which is over
only when the pile reports that port's relay open, and then needs a person's reset.

``port_on`` is refused while any latched alarm on that pile covers the port (these, an
overheat, an over-power): one place decides it, for every charger rule.

When the gateway lost its state (``gateway.state_lost``: the SD card), every port of every
pile is switched off: a port cut for heat must not stay on because the alarm that kept it off
was lost. A person turns ports back on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from drivers.modbus import events as ev
from gatewayd.alarms.catalogue import STATE_LOST, AlarmSpec
from gatewayd.events import ACTION_FAILED
from gatewayd.model import Action, Alarm, Event
from rules.charger_base import SAMPLE, ChargerRule, part_active
from rules.engine import ClearAlarm, Outcome, RaiseAlarm, World

WELDED, CUT_FAILED = ev.RELAY_WELDED, ev.CUT_FAILED
KIND = ev.KIND
CUTS = ("port_off", "all_off")
ALL = "all"  # the part of a failed all_off: every port of the pile

_SEND = (
    "Send someone at once: the port may still be live. Switch the pile off at its breaker; "
    "reset once the pile reports the relay open."
)


class ChargerTripRule(ChargerRule):
    name: ClassVar[str] = "charger_trips"
    alarm_types: ClassVar[tuple[AlarmSpec, ...]] = (
        AlarmSpec(WELDED, "critical", True, "reset by a person once the pile reports the relay "
                  "open", "A relay acknowledged the cut and stayed closed (welded). " + _SEND,
                  part="port"),
        AlarmSpec(CUT_FAILED, "critical", True, "reset by a person once the pile reports the "
                  "relay open", "The gateway could not cut a port (no answer, or the pile "
                  "refused). " + _SEND, part="port"),
    )  # fmt: skip

    def on_event(self, event: Event, world: World) -> Outcome | None:
        if event.type == STATE_LOST:
            reason = "the gateway lost its state: every port off until a person turns it on"
            return Outcome(
                actions=[
                    Action(d.id, "all_off", reason=reason, origin=self.name)
                    for d in world.devices.values()
                    if d.kind == KIND
                ]
            )
        if event.type == WELDED:
            part = str(event.data.get("port"))
            return Outcome(alarms=[RaiseAlarm(event.device, WELDED, dict(event.data), part=part)])
        if event.type == CUT_FAILED:
            return self._failed(event.device, event.data.get("ports"), dict(event.data))
        if event.type == ACTION_FAILED and event.data.get("action") in CUTS:
            if event.data.get("code") == WELDED.partition(".")[2]:
                return None  # the pile said so itself: charger.relay_welded has it
            device = world.devices.get(event.device)
            if device is None or device.kind != KIND:
                return None
            port = (event.data.get("args") or {}).get("port")
            return self._failed(event.device, [port] if port else None, dict(event.data))
        if event.type == SAMPLE and event.data.get("source") == "ports":
            return self._opened(event, world)
        return None

    def permit(self, action: Action, world: World) -> str | None:
        if action.name != "port_on":
            return None
        port = str(action.args.get("port"))
        for alarm in world.alarms.values():
            if alarm.device == action.device and alarm.latched and _covers(alarm, port):
                state = "still active" if alarm.active else "awaiting reset"
                return f"{alarm.type} ({state}) covers port {port}: reset {alarm.id} first"
        return None

    @staticmethod
    def _failed(device: str, ports: Any, data: Mapping[str, Any]) -> Outcome:
        if not isinstance(ports, list) or not ports:
            return Outcome(alarms=[RaiseAlarm(device, CUT_FAILED, data, part=ALL)])
        return Outcome(alarms=[RaiseAlarm(device, CUT_FAILED, data, part=str(p)) for p in ports])

    def _opened(self, event: Event, world: World) -> Outcome | None:
        """Relays the pile now reports open end the welded / failed-cut conditions."""
        dev = event.device
        welded, failed = part_active(world, dev, WELDED), part_active(world, dev, CUT_FAILED)
        if welded is None and failed is None:
            return None
        ports = event.data.get("ports", [])
        opened = {str(p["port"]) for p in ports if p.get("relay") is False}
        every = bool(ports) and len(opened) == len(ports)
        out = Outcome()
        for alarm in (a for a in (welded, failed) if a is not None):
            for part in alarm.active_parts:
                if part in opened or (part == ALL and every):
                    out.alarms.append(ClearAlarm(dev, alarm.type, part))
        return out


def _covers(alarm: Alarm, port: str) -> bool:
    return not alarm.parts or port in alarm.parts or ALL in alarm.parts
