"""The smoke-detector family: wireless detectors heard through an SRB-433 receiver.

Everything the rest of the house knows about smoke detectors is here: their settings, events
and state, what they mean for a fire, how they become metrics. The driver
(``drivers.srb433.driver``) knows the wire; the smoke rule (``rules.smoke``) judges silences
and batteries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.srb433 import events as ev
from drivers.srb433 import profile
from drivers.srb433.profile import BY_NAME, DEFAULT_HEARTBEAT_SECONDS, MODELS, detector_model
from gatewayd.cli.i18n import t
from gatewayd.family import (
    AddMetric,
    Deadband,
    EventSpec,
    Family,
    FireSignal,
    Role,
    Stage,
    Tally,
    fields,
    problems_shown,
)
from gatewayd.model import Action, Alarm, Event, alarm_id
from gatewayd.schema import Field, Str
from gatewayd.settings import Settings, setting

if TYPE_CHECKING:
    from gatewayd.driver import Commands
    from gatewayd.uplink.volume import Traffic

ADDRESS = Str(
    pattern=r"[0-9A-Fa-f]{8}",
    expected="8 hex digits (the detector id on its label)",
    transform=str.upper,
    doc="Detector id printed on its label, e.g. 1A2B3C4D.",
)
ROOM = Str(default="", doc="Where it is, for people reading alarms: 301, 车棚 (the bike shed).")
MODEL = Field(
    "a detector model: " + ", ".join(f'"{m.name}" ({m.code:#04x})' for m in MODELS.values()),
    lambda v: detector_model(v).name,
    default=None,
    doc="Its model (`gatewayd pair smoke` writes it): sets the heartbeat the gateway expects; "
    "an SD-1L sends none and is unsupervised. Absent: supervised as an SD-10.",
    json={"anyOf": [{"enum": list(BY_NAME)}, {"enum": list(MODELS)}]},
)


@dataclass(frozen=True, kw_only=True)
class SmokeSettings(Settings):
    address: str = setting(ADDRESS)
    room: str = setting(ROOM)
    model: str | None = setting(MODEL)


#: The detectors' fire actions, which their receiver's driver carries out for them all at once
#: (drivers/srb433/interconnect.py): SOUND ALL in a fire, HUSH ALL at its reset.
SOUND, HUSH = "sound", "hush"

_DETECTOR = fields(address="string", seq="integer")
_RX = fields(bus="string", port="string")

EVENTS: Mapping[str, EventSpec] = {
    ev.ALARM: EventSpec("critical", "Smoke in the detector's chamber (repeated every 30 s while "
                        "it lasts).", {**_DETECTOR, **fields(density="integer")}),
    ev.HEAT_ALARM: EventSpec("critical", "Heat alarm of a combined smoke/heat detector.",
                             {**_DETECTOR, **fields(temperature_c="integer")}),
    ev.CLEARED: EventSpec("info", "The chamber is clear again.", _DETECTOR),
    ev.TEST: EventSpec("info", "The test button was pressed; warning when the test failed.",
                       {**_DETECTOR, **fields(result="string")}, severities=("info", "warning")),
    ev.LOW_BATTERY: EventSpec("warning", "Low battery (checked at power-up and every 24 h).",
                              {**_DETECTOR, **fields(battery_mv="integer")}),
    ev.TAMPER: EventSpec("warning", "Taken off its base (info: put back).",
                         {**_DETECTOR, **fields(removed="boolean")},
                         severities=("warning", "info")),
    ev.FAULT: EventSpec("warning", "A fault: chamber_dirty, sensor_failure, end_of_life.",
                        {**_DETECTOR, **fields(code="integer", fault="string")}),
    ev.HEARTBEAT: EventSpec("info", "The hourly sign of life.",
                            {**_DETECTOR, **fields(battery_mv="integer", rssi_dbm="integer")}),
    ev.HUSHED: EventSpec("info", "Silenced by its button during an alarm.", _DETECTOR),
    ev.MISSING: EventSpec("warning", "Silent for missing_after_periods heartbeat periods.",
                          fields(last_seen="number", silent_seconds="integer"),
                          from_device=False),
    ev.RETURNED: EventSpec("info", "Heard again after it was missing.", fields(after="string"),
                           from_device=False),
    ev.ALARM_ENDED: EventSpec("info", "An alarm no longer repeated: over.",
                              fields(alarm="string", silent_seconds="integer"),
                              from_device=False),
    ev.RECEIVER_OFFLINE: EventSpec("warning", "The receiver does not answer (device: the "
                                   "gateway).", {**_RX, **fields(reason="string")}),
    ev.RECEIVER_ONLINE: EventSpec("info", "The receiver answers (also at start).", _RX),
    ev.DETECTOR_PAIRED: EventSpec("info", "A detector joined during pair mode.",
                                  {**_RX, **fields(address="string", model="integer",
                                                   configured="boolean")}),
    ev.UNKNOWN_DETECTOR: EventSpec("warning", "A detector paired to the receiver but not in "
                                   "gateway.toml.",
                                   {**_RX, **fields(address="string", first_type="string")}),
}  # fmt: skip

STATE = fields(
    address="string", last_seen="number", alarm="string", density="integer",
    temperature_c="integer", hushed="boolean", battery_mv="integer", rssi_dbm="integer",
    low_battery_at="number", tamper="boolean", last_fault="string", last_fault_code="integer",
    last_fault_at="number", last_test="string", last_test_at="number",
)  # fmt: skip

#: What the driver keeps of each receiver in the gateway's state, under ``receiver.<bus>``.
RECEIVER = {
    "type": "object",
    "properties": {
        **fields(online="boolean?", port="string", firmware="integer", paired="integer",
                 bad_crc="integer", bad_len="integer", revision="string"),
        # Interconnection (SOUND ALL, rev B only): "ready", "sounding", or "unsupported" (rev A).
        "sound_all": {"enum": ["ready", "sounding", "unsupported"]},
    },
    "additionalProperties": False,
}  # fmt: skip

METRICS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "gatewayd_smoke_alarm_active": (("device", "room"), "1 while the detector reports smoke or heat."),
    "gatewayd_smoke_missing": (("device",), "1 while the detector has been silent too long (battery out, removed, out of range)."),
    "gatewayd_smoke_rssi_dbm": (("device",), "Radio signal of the detector's last heartbeat, dBm."),
    "gatewayd_smoke_supervised": (("device", "model"), "1 when the gateway would notice the detector falling silent (it sends heartbeats); 0 for a legacy detector (SD-1L) that sends none."),
    "gatewayd_receiver_up": (("bus",), "1 while the smoke receiver answers the gateway."),
    "gatewayd_receiver_bad_frames_total": (("bus", "reason"), "Damaged radio frames dropped (crc, len); fast growth means a bad cable or adapter."),
}  # fmt: skip


class SmokeFamily(Family):
    kind: ClassVar[str] = ev.KIND
    title: ClassVar[str] = "smoke detector"
    buses: ClassVar[tuple[str, ...]] = ("serial",)
    Settings = SmokeSettings
    address: ClassVar[str | None] = "address"
    commands: ClassVar[Commands] = {"pair": {"smoke": "drivers.srb433.pairing:pair_smoke"}}
    id_prefix: ClassVar[str] = "smoke-"
    events = EVENTS
    state = STATE
    telemetry = fields(battery_mv="integer", rssi_dbm="integer")
    # An hourly heartbeat: sent whole (max silence is shorter), unless it repeats itself.
    deadbands: ClassVar[Mapping[str, Deadband]] = {
        "battery_mv": Deadband(50.0, step=1), "rssi_dbm": Deadband(6.0, step=1),
    }  # fmt: skip
    readings: ClassVar[frozenset[str]] = frozenset({"last_seen", "battery_mv", "rssi_dbm"})
    gateway_state: ClassVar[Mapping[str, Any]] = {r"^receiver\.": RECEIVER}
    metrics = METRICS

    # -- models and supervision ---------------------------------------------------------------

    def model(self, device: Any) -> str | None:
        model = device.settings.get("model")
        return str(model) if model else None

    def heartbeat_seconds(self, device: Any) -> float | None:
        """The period of the detector's heartbeat, from its model; None: it sends none."""
        model = BY_NAME.get(self.model(device) or "")
        return DEFAULT_HEARTBEAT_SECONDS if model is None else model.heartbeat_seconds

    def supervised(self, device: Any) -> bool:
        return self.heartbeat_seconds(device) is not None

    def traffic(self, device: Any, bus: Mapping[str, Any]) -> Traffic:
        """Its heartbeats: each an event, a state and a telemetry message (sizes as
        bench/bench_uplink.py measured them); alarms are too rare to count."""
        from gatewayd.uplink.volume import DAY, Traffic

        period = self.heartbeat_seconds(device)
        beats = DAY / period if period else 0.0
        return Traffic(
            events=beats, event_bytes=224, state_bytes=149, readings=beats,
            telemetry_bytes=94, part_bytes=109,
        )  # fmt: skip

    def fire_signal(self, event: Event, device: Any) -> FireSignal | None:
        if event.type == ev.ALARM:
            return FireSignal(device.id, "alarm", "smoke")
        if event.type == ev.HEAT_ALARM:
            return FireSignal(device.id, "alarm", "heat")
        return None

    def drill_signal(self, device: Any) -> Event | None:
        """A smoke alarm from the detector, as a drill plays it (no radio frame: no SEQ)."""
        return Event(device.id, ev.ALARM, "critical", {"address": device.settings.get("address")})

    def fire_actions(self, device: Any, stage: Stage) -> list[tuple[Role, Action]]:
        """In any fire every detector sounds (interconnection): its receiver's driver sends
        one SOUND ALL for them all, again and again while the fire lasts (a rev A receiver
        cannot: its state says so)."""
        if stage != "alarm":
            return []
        return [("sound", Action(device.id, SOUND, persist="while_fire"))]

    def after_fire(self, device: Any) -> list[Action]:
        return [Action(device.id, HUSH, reason="fire reset")]

    def fire_over(self, event: Event, device: Any) -> bool:
        return event.type in (ev.CLEARED, ev.ALARM_ENDED)

    def reports_fire(
        self, device: Any, alarms: Mapping[str, Alarm], state: Mapping[str, Any]
    ) -> bool:
        return any(
            (a := alarms.get(alarm_id(device.id, t))) is not None and a.active for t in ev.FIRE
        )

    def export(
        self,
        device: Any,
        state: Mapping[str, Any],
        alarms: Mapping[str, Alarm],
        tally: Tally,
        add: AddMetric,
    ) -> bool:
        fire = state.get("alarm") in ("smoke", "heat") or self.reports_fire(device, alarms, state)
        missing = alarm_id(device.id, ev.MISSING) in alarms
        add("gatewayd_smoke_alarm_active", 1 if fire else 0, device.id, self.room(device))
        add("gatewayd_smoke_missing", 1 if missing else 0, device.id)
        supervised = self.supervised(device)
        add(
            "gatewayd_smoke_supervised", 1 if supervised else 0, device.id, self.model(device) or ""
        )
        rssi = state.get("rssi_dbm")
        if isinstance(rssi, int | float) and not isinstance(rssi, bool):
            add("gatewayd_smoke_rssi_dbm", float(rssi), device.id)
        return not missing

    def export_gateway(self, gateway_state: Mapping[str, Any], add: AddMetric) -> None:
        """The receivers' own figures, which the driver keeps in the gateway's state."""
        for key, rx in sorted(gateway_state.items()):
            if key.startswith("receiver.") and isinstance(rx, Mapping):
                bus = key.removeprefix("receiver.")
                add("gatewayd_receiver_up", 1 if rx.get("online") else 0, bus)
                for what in ("crc", "len"):
                    bad = rx.get(f"bad_{what}")
                    add("gatewayd_receiver_bad_frames_total", float(bad or 0), bus, what)

    def describe_gateway(self, gateway_state: Mapping[str, Any]) -> list[str]:
        lines = []
        for key, rx in sorted(gateway_state.items()):
            if not key.startswith("receiver.") or not isinstance(rx, Mapping):
                continue
            firmware = rx.get("firmware")
            if not isinstance(firmware, int):
                continue
            sound = {"unsupported": "status_sound_all_unsupported", "sounding": "status_sounding"}
            name = key.removeprefix("receiver.")
            version, rev = profile.version(firmware), profile.revision(firmware)
            what = t(sound.get(str(rx.get("sound_all")), "status_sound_all_ready"))
            lines.append(t("status_receiver", bus=name, version=version, rev=rev, sound=what))
        return lines

    def self_test(self, device: Any, bus: Any, gateway_id: str) -> tuple[bool, dict[str, Any]]:
        from drivers.srb433.probe import self_test

        return self_test(device, bus)

    def verdict(
        self, state: Mapping[str, Any], gateway_state: Mapping[str, Any], bus: str
    ) -> tuple[bool, dict[str, str]]:
        problems = []
        receiver = gateway_state.get(f"receiver.{bus}") or {}
        answers = bool(receiver.get("online"))
        if not answers:
            problems.append("its receiver does not answer")
        if state.get("alarm") in ("smoke", "heat"):
            problems.append(f"reports {state['alarm']}")
        if state.get("tamper"):
            problems.append("off its base")
        shown = {"receiver": "answers" if answers else "does not answer"}
        return not problems, {**shown, **problems_shown(problems)}
