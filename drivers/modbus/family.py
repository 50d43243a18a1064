"""The charging-pile family: e-bike charging piles on RS-485 (Modbus RTU) or Modbus TCP.

What the rest of the house knows about chargers: settings, actions, events, state and
telemetry, their part in a fire (every port is cut at the first alarm; a pile's own smoke input
reports a fire), and their metrics. Which pile model speaks which registers is a profile
(``drivers.modbus.profiles``): a second model is a profile and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.modbus import events as ev
from drivers.modbus.profiles import PROFILES
from drivers.modbus.unit import ModbusFamily, Timing, UnitBus, UnitSession
from gatewayd.driver import DeviceConfig
from gatewayd.family import (
    ActionSpec,
    AddMetric,
    Deadband,
    EventSpec,
    FireSignal,
    Found,
    Role,
    Stage,
    Tally,
    fields,
    problems_shown,
)
from gatewayd.model import Action, Alarm, Event
from gatewayd.schema import Int, OneOf, Str
from gatewayd.settings import Settings, setting

if TYPE_CHECKING:
    from gatewayd.uplink.volume import Traffic

ACTIVE = ("charging", "full")  # port states with a session (and a closed relay)
PORT = Int(1, 16, doc="port number on the pile, 1..N")
CUTS, ENERGY = "cuts", "energy_wh"


@dataclass(frozen=True, kw_only=True)
class ChargerSettings(Settings):
    unit: int = setting(Int(1, 247, doc="Modbus slave address"))
    profile: str = setting(OneOf(*PROFILES, default="ebc", doc="pile model"))
    failsafe_seconds: int = setting(
        Int(0, 65535, default=300,
            doc="pile opens every relay after this long without the gateway; 0 disables")
    )  # fmt: skip
    power_limit_watts: int | None = setting(
        Int(50, 65535, default=None, doc="per-port hardware trip; the pile's own when absent")
    )
    room: str = setting(Str(default="", doc="where the pile stands, for people: 车棚"))


_PORT = fields(port="integer")
_CUT = fields(ports="integer[]", reason="string", origin="string", done="string",
              attempts="integer", how="string", relays_closed="integer[]", power_w="integer?")  # fmt: skip
_READING = fields(
    port="integer", state="string", relay="boolean?", power_w="number",
    temperature_c="number?", fault="string",
)  # fmt: skip

EVENTS: Mapping[str, EventSpec] = {
    ev.SAMPLE: EventSpec("info", "A reading that moved, for the rules (never published).",
                         fields(source="string", unit="integer", ports_n="integer"),
                         internal=True),
    ev.PORT_STARTED: EventSpec("info", "A charging session began.", _PORT),
    ev.PORT_FULL: EventSpec("info", "The battery is full (floating).",
                            {**_PORT, **fields(energy_wh="number")}),
    ev.PORT_STOPPED: EventSpec("info", "A session ended: unplugged, fault:…, failsafe, "
                               "emergency_stop, relay_opened.",
                               {**_PORT, **fields(reason="string")}),
    ev.PORT_FAULT: EventSpec("warning", "The pile reports a port fault (critical: "
                             "over_temperature, short_circuit, relay_welded, leakage).",
                             {**_PORT, **fields(fault="string")},
                             severities=("warning", "critical")),
    ev.PORT_CUT: EventSpec("warning", "What the gateway switched off and why (critical when a "
                           "relay stayed closed).", _CUT, severities=("warning", "critical")),
    ev.CUT_FAILED: EventSpec("critical", "A cut the pile did not answer.",
                             fields(ports="integer[]", reason="string", error="string")),
    ev.RELAY_WELDED: EventSpec("critical", "A relay acknowledged the cut and stayed closed.",
                               {**_PORT, **fields(reason="string", estop="string",
                                                  power_w="integer?")}),
    ev.STATUS: EventSpec("info", "Pile status bits set or cleared (warning for smoke_input, "
                         "cabinet_over_temperature, failsafe_tripped, pile_fault).",
                         fields(set="string[]", cleared="string[]", status="string[]"),
                         severities=("info", "warning")),
    ev.ONLINE: EventSpec("info", "The pile answers again.", {}),
    ev.OFFLINE: EventSpec("warning", "The pile stopped answering.",
                          fields(unit="integer", reason="string")),
}  # fmt: skip

STATE = fields(
    online="boolean", unit="integer", ports="{}[]", status_bits="integer", status="string[]",
    cabinet_c="number?", mains_v="number", total_power_w="number",
)  # fmt: skip
#: What a pile says of itself (the devices list; its model is the config's ``profile``).
IDENTITY = fields(firmware="string", port_count="integer")
STATE["ports"]["items"] = {"type": "object", "properties": _READING}

TELEMETRY = fields(
    port="integer", voltage_v="number", current_a="number", power_w="number",
    energy_wh="number", temperature_c="number?", cabinet_c="number?", mains_v="number",
    total_power_w="number",
)  # fmt: skip

#: Report by exception: what a charge's drift may do unsent (docs/integrator.md). Steps are
#: the registers' resolution (datasheet: 0.1 V, 0.01 A, 1 W, 1 Wh, 0.1 °C).
DEADBANDS: Mapping[str, Deadband] = {
    "voltage_v": Deadband(2.0, step=0.1),
    "current_a": Deadband(0.1, step=0.01),
    "power_w": Deadband(10.0, step=1),
    "energy_wh": Deadband(10.0, step=1),
    "temperature_c": Deadband(0.5, step=0.1),
    "cabinet_c": Deadband(0.5, step=0.1),
    "mains_v": Deadband(2.0, step=0.1),
    "total_power_w": Deadband(10.0, step=1),
}
#: What moves with every read in the retained state; the rest (online, a port's state, its
#: relay, its fault, the status bits) is discrete and republished at once.
READINGS = frozenset({"power_w", "temperature_c", "cabinet_c", "mains_v", "total_power_w"})

METRICS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "gatewayd_charger_port_power_watts": (("device", "port"), "Power the port delivers now; absent while idle at 0 W."),
    "gatewayd_charger_port_temperature_celsius": (("device", "port"), "Temperature at the port's socket."),
    "gatewayd_charger_port_state": (("device", "port", "state"), "1 for the port's current state (idle, charging, full, fault, disabled); other states are absent."),
    "gatewayd_charger_port_energy_joules_total": (("device", "port"), "Energy delivered through the port since the daemon started (3600 J = 1 Wh); appears when the port first charges."),
    "gatewayd_charger_cabinet_temperature_celsius": (("device",), "Temperature inside the pile's cabinet."),
    "gatewayd_charger_cuts_total": (("device", "reason"), "Ports the gateway switched off, by reason (the rule, or command)."),
}  # fmt: skip


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # NaN is "no reading"


def cut_reason(origin: str) -> str:
    """A bounded label for why a port was cut: the rule, or "command" (never the user)."""
    if origin.startswith("command"):
        return "command"
    return origin.removeprefix("charger_") or "unknown"


class ChargerFamily(ModbusFamily):
    kind: ClassVar[str] = ev.KIND
    title: ClassVar[str] = "charging pile"
    Settings = ChargerSettings
    plural: ClassVar[str] = "piles"
    id_prefix: ClassVar[str] = "pile-"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "port_on": ActionSpec({"port": PORT}, "Close a port's relay (a person's decision)."),
        "port_off": ActionSpec({"port": PORT}, "Open a port's relay, verified.", local=True),
        "all_off": ActionSpec(doc="Open every relay of the pile, verified.", local=True),
    }
    events = EVENTS
    state = STATE
    telemetry = TELEMETRY
    deadbands = DEADBANDS
    readings = READINGS
    identity = IDENTITY
    metrics = METRICS
    refused_in_fire: ClassVar[Mapping[str, str]] = {"port_on": "chargers stay off"}

    def session(self, device: DeviceConfig, bus: UnitBus) -> UnitSession:
        from drivers.modbus.pile import PileConfig, PileSession

        st = device.settings
        cfg = PileConfig(
            device=device.id,
            unit=st["unit"],
            profile=PROFILES[st.get("profile", "ebc")],
            failsafe_seconds=st.get("failsafe_seconds", 300),
            power_limit_watts=st.get("power_limit_watts"),
        )
        return PileSession(cfg, bus)

    def model(self, device: Any) -> str | None:
        profile = device.settings.get("profile")  # a foreign driver's pile may not say
        return str(profile) if profile else None

    def traffic(self, device: Any, bus: Mapping[str, Any]) -> Traffic:
        """A busy pile's day: 3 of 12 ports charging all day, battery after battery, as
        bench/bench_uplink.py runs it (2026-11-29: 114 events, 92 discrete state changes,
        2 445 telemetry messages by exception; 3.6 port messages a full read before)."""
        from gatewayd.uplink.volume import DAY, Traffic

        return Traffic(
            events=114, event_bytes=185, changes=92, state_bytes=1250,
            readings=DAY / bus.get("slow_seconds", Timing.slow_seconds),
            telemetry=2445, telemetry_bytes=117, parts=3.6, part_bytes=158,
        )  # fmt: skip

    # -- fire ---------------------------------------------------------------------------------

    def fire_signal(self, event: Event, device: Any) -> FireSignal | None:
        if event.type == ev.STATUS and ev.SMOKE_INPUT in event.data.get("set", ()):
            return FireSignal(device.id, "alarm", "the pile's smoke input")
        if event.type == ev.PORT_CUT and event.data.get("origin") == ev.OVERHEAT_RULE:
            # A port hot enough to cut, beside a smoke alarm: a fire, not a cooking steam.
            return FireSignal(device.id, "alarm", "a charger overheat cut", confirms_only=True)
        return None

    def fire_over(self, event: Event, device: Any) -> bool:
        return event.type == ev.STATUS and ev.SMOKE_INPUT in event.data.get("cleared", ())

    def reports_fire(
        self, device: Any, alarms: Mapping[str, Alarm], state: Mapping[str, Any]
    ) -> bool:
        return ev.SMOKE_INPUT in state.get("status", ())

    def fire_actions(self, device: Any, stage: Stage) -> list[tuple[Role, Action]]:
        return [("cut", Action(device.id, "all_off"))] if stage == "alarm" else []

    # -- metrics ------------------------------------------------------------------------------

    def count(self, event: Event, tally: Tally) -> None:
        if event.type == ev.PORT_CUT:
            tally.add(CUTS, event.device, cut_reason(str(event.data.get("origin", ""))))
        elif event.type == ev.SAMPLE and event.data.get("source") == "ports":
            for port in event.data.get("ports", ()):
                self._energy(tally, event.device, port)

    @staticmethod
    def _energy(tally: Tally, dev: str, port: Mapping[str, Any]) -> None:
        """Turn the pile's per-session energy register into a counter that only grows."""
        wh, label = _num(port.get("energy_wh")), str(port.get("port"))
        if wh is None:
            return
        memo = (dev, label)
        prev = tally.memo.get(memo)
        tally.memo[memo] = wh
        if (ENERGY, dev, label) not in tally.values:
            if port.get("state") not in ACTIVE:
                return  # the series starts when the port first charges: keeps scrapes small
            tally.add(ENERGY, dev, label, 0.0)
            if prev is None:
                return  # delivered before this daemon watched: not ours to count
        # A reading below the previous one is a new session counting from zero.
        tally.add(ENERGY, dev, label, wh - prev if prev is not None and wh >= prev else wh)

    def export(
        self,
        device: Any,
        state: Mapping[str, Any],
        alarms: Mapping[str, Alarm],
        tally: Tally,
        add: AddMetric,
    ) -> bool:
        dev = device.id
        energy = tally.of(ENERGY, dev)
        for p in state.get("ports") or ():
            if not isinstance(p, Mapping):
                continue
            port, st = str(p.get("port")), str(p.get("state", "unknown"))
            watts, temp = _num(p.get("power_w")), _num(p.get("temperature_c"))
            if watts is not None and (watts or st != "idle"):  # idle at 0 W: absent, not 0
                add("gatewayd_charger_port_power_watts", watts, dev, port)
            if temp is not None:
                add("gatewayd_charger_port_temperature_celsius", temp, dev, port)
            add("gatewayd_charger_port_state", 1, dev, port, st)
            if port in energy:
                add("gatewayd_charger_port_energy_joules_total", energy[port] * 3600, dev, port)
        cabinet = _num(state.get("cabinet_c"))
        if cabinet is not None:
            add("gatewayd_charger_cabinet_temperature_celsius", cabinet, dev)
        for reason, n in sorted(tally.of(CUTS, dev).items()):
            add("gatewayd_charger_cuts_total", n, dev, reason)
        return bool(state.get("online"))

    async def identify(self, driver: str, link: Any, address: Any, timeout: float) -> Found | None:
        if driver not in self.buses:
            return None
        from drivers.modbus.probe import identify

        return await identify(link, address, timeout)

    def self_test(self, device: Any, bus: Any, gateway_id: str) -> tuple[bool, dict[str, Any]]:
        from drivers.modbus.probe import self_test

        return self_test(device, bus)

    def verdict(
        self, state: Mapping[str, Any], gateway_state: Mapping[str, Any], bus: str
    ) -> tuple[bool, dict[str, str]]:
        problems = [] if state.get("online") else ["not answering"]
        faulted = [p["port"] for p in state.get("ports") or () if p.get("fault") not in
                   (None, "none")]  # fmt: skip
        if faulted:
            problems.append(f"fault on port(s) {', '.join(map(str, faulted))}")
        problems += [s for s in state.get("status") or () if s != "door_open"]
        return not problems, problems_shown(problems)
