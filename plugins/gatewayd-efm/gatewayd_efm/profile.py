"""The EFM-4's Modbus map, as data (/work/shared/datasheets/electrical-fire-efm.md): where each
register is and how it is encoded. The session and the codec read it; nothing else knows an
address. A second detector model is another ``EfmProfile``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EfmProfile:
    name: str
    label: str
    model_id: int  # input register 0
    channels: int
    # Input registers (FC 04).
    model_reg: int = 0
    firmware_reg: int = 1
    channels_reg: int = 2
    status_reg: int = 3
    counter_reg: int = 4
    type_base: int = 8
    value_base: int = 16
    state_base: int = 24
    peak_base: int = 32
    last_input: int = 39
    # Holding registers (FC 03/06).
    threshold_base: int = 0
    delay_reg: int = 4
    command_reg: int = 5
    self_trip_reg: int = 6
    reset_value: int = 0x5A5A
    self_test_value: int = 0xA5A5
    # Coils (FC 01/05).
    trip_coil: int = 0
    # Ranges the detector accepts (exception 03 outside them).
    leakage_range_ma: tuple[int, int] = (20, 1000)
    temperature_range_dc: tuple[int, int] = (450, 1400)  # 0.1 °C
    delay_range_s: tuple[int, int] = (1, 60)

    def identity_span(self) -> tuple[int, int]:
        """Model, firmware, channel count, status, event counter: one read."""
        return self.model_reg, self.counter_reg - self.model_reg + 1

    def status_span(self) -> tuple[int, int]:
        """Status bits and event counter: the fast poll."""
        return self.status_reg, self.counter_reg - self.status_reg + 1

    def types_span(self) -> tuple[int, int]:
        return self.type_base, self.channels

    def channels_span(self) -> tuple[int, int]:
        """Values, states and peaks of every channel, in one read."""
        return self.value_base, self.peak_base + self.channels - self.value_base

    def settings_span(self) -> tuple[int, int]:
        """Thresholds, delay, command, trip on alarm (holding registers)."""
        return self.threshold_base, self.self_trip_reg - self.threshold_base + 1


#: Status bits (input register 3), by name.
STATUS_BITS = {
    0: "leakage_alarm",
    1: "temperature_alarm",
    2: "channel_fault",
    3: "trip_output",
    4: "self_test",
    5: "mains_lost",
}

#: Channel types (input registers 8..11) and states (24..27).
UNUSED, RESIDUAL, TEMPERATURE = 0, 1, 2
CHANNEL_TYPES = {UNUSED: "unused", RESIDUAL: "residual_current", TEMPERATURE: "temperature"}
NORMAL, ALARM, OPEN_CIRCUIT, SHORT_CIRCUIT = 0, 1, 2, 3
CHANNEL_STATES = {
    NORMAL: "normal",
    ALARM: "alarm",
    OPEN_CIRCUIT: "open_circuit",
    SHORT_CIRCUIT: "short_circuit",
}
FAULTS = (OPEN_CIRCUIT, SHORT_CIRCUIT)

EFM4 = EfmProfile(name="efm4", label="EFM-4", model_id=0x4546, channels=4)

PROFILES = {p.name: p for p in (EFM4,)}
