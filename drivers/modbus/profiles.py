"""Charging pile models as data: register map, scaling, code tables, and pure decoding.

A second pile model is a new ``ChargerProfile`` value in ``PROFILES``, not new polling code
(STYLE §3). Everything here is pure: register images in, readings out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.modbus.coalesce import Span


@dataclass(frozen=True)
class Reg:
    """One value: ``offset`` from its block, ``words`` 1 or 2 (high word first), raw × scale."""

    name: str
    offset: int
    scale: float = 1.0
    signed: bool = False
    words: int = 1


@dataclass(frozen=True)
class ChargerProfile:
    name: str
    model_id: int
    max_ports: int
    # Input registers (FC 04)
    pile_base: int
    pile_regs: tuple[Reg, ...]
    port_base: int
    port_stride: int
    port_regs: tuple[Reg, ...]
    summary_base: int
    summary_regs: tuple[Reg, ...]
    # Coils (FC 01/05/15): relay of port p at relay_base + p - 1, 1 = closed
    relay_base: int
    # Holding registers (FC 03/06)
    power_limit_reg: int
    overtemp_trip_reg: int
    overtemp_trip_scale: float
    failsafe_reg: int
    command_reg: int
    estop_value: int
    clear_value: int
    # Code tables, normalised to the names events and rules use
    states: Mapping[int, str]
    faults: Mapping[int, str]
    status_bits: Mapping[int, str]
    sensor_invalid: frozenset[int] = field(default_factory=frozenset)
    max_read_registers: int = 125
    max_read_coils: int = 2000

    def port_span(self, port: int) -> Span:
        return (self.port_base + self.port_stride * (port - 1), self.port_stride)

    def summary_span(self) -> Span:
        return (self.summary_base, _length(self.summary_regs))

    def pile_span(self) -> Span:
        return (self.pile_base, _length(self.pile_regs))

    def readable(self, ports: int) -> list[Span]:
        """Input register areas a read may cover: the datasheet refuses the holes between."""
        return [
            self.pile_span(),
            (self.port_base, self.port_stride * ports),
            self.summary_span(),
        ]

    @property
    def label(self) -> str:
        """How people name the model: "EBC"."""
        return self.name.upper()


def _length(regs: tuple[Reg, ...]) -> int:
    return max(r.offset + r.words for r in regs)


EBC = ChargerProfile(
    name="ebc",
    model_id=0x4542,
    max_ports=16,
    pile_base=0,
    pile_regs=(
        Reg("model", 0),
        Reg("firmware", 1),
        Reg("port_count", 2),
        Reg("status", 3),
        Reg("cabinet_c", 4, 0.1, signed=True),
        Reg("mains_v", 5, 0.1),
        Reg("total_power_w", 6),
    ),
    port_base=16,
    port_stride=8,
    port_regs=(
        Reg("state", 0),
        Reg("voltage_v", 1, 0.1),
        Reg("current_a", 2, 0.01),
        Reg("power_w", 3),
        Reg("energy_wh", 4, words=2),
        Reg("temperature_c", 6, 0.1, signed=True),
        Reg("fault", 7),
    ),
    summary_base=256,
    summary_regs=(
        Reg("hottest_c", 0, 0.1, signed=True),
        Reg("hottest_port", 1),
        Reg("charging", 2),
        Reg("faulted", 3),
        Reg("total_power_w", 4),
        Reg("status", 5),
    ),
    relay_base=0,
    power_limit_reg=0,
    overtemp_trip_reg=1,
    overtemp_trip_scale=0.1,
    failsafe_reg=2,
    command_reg=3,
    estop_value=0xA5A5,
    clear_value=0x5A5A,
    states={0: "idle", 1: "charging", 2: "full", 3: "fault", 4: "disabled"},
    faults={
        0: "none",
        1: "over_temperature",
        2: "over_power",
        3: "short_circuit",
        4: "relay_welded",
        5: "leakage",
    },
    status_bits={
        0: "pile_fault",
        1: "mains_abnormal",
        2: "cabinet_over_temperature",
        3: "smoke_input",
        4: "door_open",
        5: "failsafe_tripped",
    },
    sensor_invalid=frozenset({0x7FFF}),  # an open thermistor: 3276.7 °C
)

PROFILES: Mapping[str, ChargerProfile] = {"ebc": EBC}


# -- decoding ---------------------------------------------------------------------------------

Image = Mapping[int, int]  # register address -> raw 16-bit value


def value(image: Image, base: int, reg: Reg) -> float | int:
    raw = 0
    for i in range(reg.words):
        raw = raw << 16 | image[base + reg.offset + i]
    bits = 16 * reg.words
    if reg.signed and raw >> (bits - 1):
        raw -= 1 << bits
    if reg.scale == 1.0:
        return raw
    return round(raw * reg.scale, 3)


def block(image: Image, base: int, regs: tuple[Reg, ...]) -> dict[str, float | int]:
    return {r.name: value(image, base, r) for r in regs}


def temperature_ok(profile: ChargerProfile, image: Image, address: int) -> bool:
    """False for the raw codes a broken sensor reports, so they are never taken for heat."""
    return image[address] not in profile.sensor_invalid


def bits_named(table: Mapping[int, str], bits: int) -> list[str]:
    return [name for bit, name in sorted(table.items()) if bits >> bit & 1]


def ports_in(bitmap: int, ports: int) -> list[int]:
    return [p for p in range(1, ports + 1) if bitmap >> (p - 1) & 1]
