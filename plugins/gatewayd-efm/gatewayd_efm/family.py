"""The electrical family: EFM-4 electrical fire monitoring detectors on a Modbus line.

What the rest of the house knows about them: settings, actions, events, state, telemetry,
metrics, how a scan knows one, and their part in a fire: on a confirmed fire the detectors
that watch non-fire power (``non_fire_power = true``) trip their breakers (GB 50116-2013
§4.10: non-fire power is cut in a fire; fire pumps, emergency lighting and the like are not
on such a circuit). Nothing ever re-closes a breaker: that is a person's, at the box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.modbus.unit import ModbusFamily, UnitBus, UnitSession
from gatewayd.driver import DeviceConfig
from gatewayd.family import (
    ActionSpec,
    AddMetric,
    EventSpec,
    Found,
    Role,
    Stage,
    Tally,
    fields,
    problems_shown,
)
from gatewayd.model import Action, Alarm
from gatewayd.schema import Bool, Float, Int, OneOf, Str
from gatewayd.settings import Settings, setting
from gatewayd_efm import events as ev
from gatewayd_efm.profile import PROFILES


@dataclass(frozen=True, kw_only=True)
class ElectricalSettings(Settings):
    unit: int = setting(Int(1, 247, doc="Modbus slave address (the detector's DIP switches)"))
    profile: str = setting(OneOf(*PROFILES, default="efm4", doc="detector model"))
    room: str = setting(
        Str(default="", doc="where the distribution box is, for people: 一楼配电箱")
    )
    non_fire_power: bool = setting(
        Bool(default=False,
             doc="the circuits it trips carry non-fire power: tripped on a confirmed fire")
    )  # fmt: skip
    leakage_alarm_ma: int | None = setting(
        Int(
            20,
            1000,
            default=None,
            doc="residual current alarm threshold; the detector's own when absent",
        )
    )
    temperature_alarm_c: float | None = setting(
        Float(
            45, 140, default=None, doc="temperature alarm threshold; the detector's own when absent"
        )
    )
    alarm_delay_seconds: int | None = setting(
        Int(
            1,
            60,
            default=None,
            doc="how long a value must stay at the threshold; the detector's own when absent",
        )
    )


_CHANNEL = fields(channel="integer")
_ALARM = {**_CHANNEL, **fields(value="number?", threshold="number?", unit="string",
                               peak="number?")}  # fmt: skip
_READING = fields(channel="integer", type="string", state="string", value="number?",
                  peak="number?", threshold="number?", unit="string")  # fmt: skip

EVENTS: Mapping[str, EventSpec] = {
    ev.LEAKAGE_ALARM: EventSpec("critical", "A residual current held at or above its threshold "
                                "for the alarm delay; the detector latched it.", _ALARM),
    ev.OVERTEMP_ALARM: EventSpec("critical", "A cable or terminal temperature held at or above "
                                 "its threshold for the alarm delay; the detector latched it.",
                                 _ALARM),
    ev.ALARM_OVER: EventSpec("info", "A latched channel's value is back below its threshold: "
                             "the alarm waits for a person's reset.",
                             {**_CHANNEL, **fields(alarm="string", value="number",
                                                   threshold="number", unit="string")}),
    ev.FAULT: EventSpec("warning", "A channel's sensor is broken (open_circuit, short_circuit): "
                        "no value, never 0; info with fault none once it reads again.",
                        {**_CHANNEL, **fields(fault="string", type="string")},
                        severities=("warning", "info")),
    ev.TRIPPED: EventSpec("critical", "The detector's shunt trip opened its breaker (by the "
                          "gateway, the detector itself, or found so: warning); a person "
                          "switches it on again at the box.",
                          fields(by="string", reason="string", origin="string",
                                 verified="boolean"), severities=("critical", "warning")),
    ev.ONLINE: EventSpec("info", "The detector answers again.", {}),
    ev.OFFLINE: EventSpec("warning", "The detector stopped answering.",
                          fields(unit="integer", reason="string")),
}  # fmt: skip

STATE = fields(
    online="boolean", unit="integer", firmware="string",
    status="string[]", tripped="boolean?", channels="{}[]", leakage_ma="number?",
    temperature_c="number?", alarm_delay_seconds="integer", self_trip="boolean",
)  # fmt: skip
STATE["channels"]["items"] = {"type": "object", "properties": _READING}
#: What a detector says of itself once: in its ``devices`` entry, not every state (issue 17).
IDENTITY = fields(firmware="string")

TELEMETRY = fields(channel="integer", leakage_ma="number", temperature_c="number")

METRICS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "gatewayd_electrical_leakage_milliamperes": (("device", "channel"), "Residual (leakage) current of a circuit the EFM-4 watches; absent while its sensor is broken."),
    "gatewayd_electrical_temperature_celsius": (("device", "channel"), "Cable or terminal temperature the EFM-4 measures; absent while its sensor is broken."),
    "gatewayd_electrical_channel_state": (("device", "channel", "state"), "1 for the channel's state (normal, alarm, open_circuit, short_circuit)."),
    "gatewayd_electrical_tripped": (("device",), "1 while the detector's trip output reads set (its breaker was tripped; reset at the detector)."),
}  # fmt: skip


class ElectricalFamily(ModbusFamily):
    kind: ClassVar[str] = ev.KIND
    title: ClassVar[str] = "electrical fire detector"
    plural: ClassVar[str] = "electrical fire detectors"
    id_prefix: ClassVar[str] = "efm-"
    Settings = ElectricalSettings
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "trip": ActionSpec(doc="Trip the detector's breaker (shunt trip), read back.", local=True),
        "reset": ActionSpec(doc="Reset the detector's latched alarms and its trip output's "
                            "reading; re-energises nothing."),
        "close": ActionSpec(doc="Always refused (manual_only): a tripped breaker is switched "
                            "on by hand at the box."),
    }  # fmt: skip
    events = EVENTS
    state = STATE
    identity = IDENTITY
    telemetry = TELEMETRY
    metrics = METRICS

    def session(self, device: DeviceConfig, bus: UnitBus) -> UnitSession:
        from gatewayd_efm.session import EfmSession

        return EfmSession(device, bus)

    def model(self, device: DeviceConfig) -> str | None:
        return str(device.settings.get("profile") or "efm4")

    def describe(self, state: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = [("online", "yes" if state.get("online") else "no")]
        for c in state.get("channels") or ():
            value = "no reading" if c.get("value") is None else f"{c['value']} {c.get('unit', '')}"
            out.append((f"channel {c.get('channel')}", f"{c.get('state')}, {value}"))
        if state.get("tripped"):
            out.append(("breaker", "tripped: switch it on by hand at the box"))
        return out

    # -- fire -----------------------------------------------------------------------------------

    def fire_actions(self, device: DeviceConfig, stage: Stage) -> list[tuple[Role, Action]]:
        if stage == "confirmed" and device.settings.get("non_fire_power"):
            return [("cut", Action(device.id, "trip"))]
        return []

    # -- metrics --------------------------------------------------------------------------------

    def export(
        self,
        device: DeviceConfig,
        state: Mapping[str, Any],
        alarms: Mapping[str, Alarm],
        tally: Tally,
        add: AddMetric,
    ) -> bool:
        dev = device.id
        for c in state.get("channels") or ():
            if not isinstance(c, Mapping):
                continue
            ch, value = str(c.get("channel")), _num(c.get("value"))
            add("gatewayd_electrical_channel_state", 1, dev, ch, str(c.get("state", "unknown")))
            if value is None:
                continue
            if c.get("unit") == "mA":
                add("gatewayd_electrical_leakage_milliamperes", value, dev, ch)
            else:
                add("gatewayd_electrical_temperature_celsius", value, dev, ch)
        if state.get("tripped") is not None:
            add("gatewayd_electrical_tripped", 1 if state.get("tripped") else 0, dev)
        return bool(state.get("online"))

    # -- the CLI --------------------------------------------------------------------------------

    async def identify(self, driver: str, link: Any, address: Any, timeout: float) -> Found | None:
        if driver not in self.buses:
            return None
        from gatewayd_efm.probe import identify

        return await identify(link, address, timeout)

    def self_test(
        self, device: DeviceConfig, bus: Any, gateway_id: str
    ) -> tuple[bool, dict[str, Any]]:
        from gatewayd_efm.probe import self_test

        return self_test(device, bus)

    def verdict(
        self, state: Mapping[str, Any], gateway_state: Mapping[str, Any], bus: str
    ) -> tuple[bool, dict[str, str]]:
        problems = [] if state.get("online") else ["not answering"]
        for c in state.get("channels") or ():
            if c.get("state") != "normal":
                problems.append(f"channel {c.get('channel')} {c.get('state')}")
        if state.get("tripped"):
            problems.append("breaker tripped")
        if "mains_lost" in (state.get("status") or ()):
            problems.append("mains lost (on battery)")
        return not problems, problems_shown(problems)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
