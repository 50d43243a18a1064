"""Turning EFM-4 registers into readings and readings into events: pure functions, no I/O.

A channel's value is a residual current in mA (u16) or a temperature in 0.1 °C (s16). A
channel in fault (a broken sensor wire: state 2 or 3) has **no** value: it is ``None`` here,
never 0, whatever the register holds, so no one reads a broken sensor as "no leakage".

The detector latches an alarm itself (state 1 stays until its reset command, GB 14287); what
the gateway adds is when the value fell back below the threshold (``ALARM_OVER``): the
condition is over, the latch waits for a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gatewayd.model import Severity
from gatewayd_efm import events as ev
from gatewayd_efm.profile import (
    ALARM,
    CHANNEL_STATES,
    CHANNEL_TYPES,
    FAULTS,
    RESIDUAL,
    STATUS_BITS,
    TEMPERATURE,
    EfmProfile,
)

Change = tuple[str, Severity, dict[str, Any]]  # (event type, severity, data)


def s16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def firmware(raw: int) -> str:
    return f"{raw >> 8}.{raw & 0xFF}"


def status_names(bits: int) -> list[str]:
    return [name for bit, name in sorted(STATUS_BITS.items()) if bits >> bit & 1]


def scaled(kind: int, raw: int) -> float | int | None:
    """A value register in the channel's unit: mA (int) or °C (one decimal)."""
    if kind == RESIDUAL:
        return raw
    if kind == TEMPERATURE:
        return round(s16(raw) / 10, 1)
    return None


def decode_identity(profile: EfmProfile, regs: Sequence[int]) -> dict[str, Any]:
    """Input registers from ``identity_span``."""
    at = dict(enumerate(regs, profile.model_reg))
    return {
        "model": at[profile.model_reg],
        "firmware": firmware(at[profile.firmware_reg]),
        "channels": min(at[profile.channels_reg], profile.channels),
        "status_bits": at[profile.status_reg],
        "counter": at[profile.counter_reg],
    }


def decode_channels(
    profile: EfmProfile, types: Sequence[int], regs: Sequence[int], thresholds: Sequence[int]
) -> list[dict[str, Any]]:
    """Every used channel from the ``channels_span`` read: type, state, value and peak in
    its unit (None while in fault), and its alarm threshold in the same unit."""
    base = profile.value_base
    out = []
    for i, kind in enumerate(types):
        if kind not in (RESIDUAL, TEMPERATURE):
            continue  # unused (or a type this profile does not know)
        state = regs[profile.state_base - base + i]
        broken = state in FAULTS
        value = regs[profile.value_base - base + i]
        peak = regs[profile.peak_base - base + i]
        out.append(
            {
                "channel": i + 1,
                "type": CHANNEL_TYPES[kind],
                "state": CHANNEL_STATES.get(state, f"unknown_{state}"),
                "value": None if broken else scaled(kind, value),
                "peak": None if broken else scaled(kind, peak),
                "threshold": scaled(kind, thresholds[i]) if i < len(thresholds) else None,
                "unit": "mA" if kind == RESIDUAL else "°C",
            }
        )
    return out


def below(channel: Mapping[str, Any]) -> bool | None:
    """Whether the channel's value is below its threshold (None: no value or no threshold)."""
    value, threshold = channel.get("value"), channel.get("threshold")
    if not isinstance(value, int | float) or not isinstance(threshold, int | float):
        return None
    return bool(value < threshold)


def channel_events(
    prev: Mapping[str, Any] | None, new: Mapping[str, Any], self_test: bool
) -> list[Change]:
    """What changed on one channel between two reads (``prev`` None: the first read)."""
    out: list[Change] = []
    ch = new["channel"]
    was = prev["state"] if prev else "normal"
    now = new["state"]
    alarm = ev.LEAKAGE_ALARM if new["type"] == CHANNEL_TYPES[RESIDUAL] else ev.OVERTEMP_ALARM
    if now == CHANNEL_STATES[ALARM] and was != now and not self_test:
        data = {"channel": ch, "value": new["value"], "threshold": new["threshold"],
                "unit": new["unit"], "peak": new["peak"]}  # fmt: skip
        out.append((alarm, "critical", data))
    if now in _FAULT_NAMES and was != now:
        out.append((ev.FAULT, "warning", {"channel": ch, "fault": now, "type": new["type"]}))
    elif was in _FAULT_NAMES and now not in _FAULT_NAMES:
        out.append((ev.FAULT, "info", {"channel": ch, "fault": "none", "type": new["type"]}))
    over_before = was == CHANNEL_STATES[ALARM] and prev is not None and below(prev)
    # In a self-test every channel reports alarm below its threshold: no alarm was latched,
    # so none is over either.
    if now == CHANNEL_STATES[ALARM] and below(new) and not over_before and not self_test:
        data = {"channel": ch, "alarm": alarm, "value": new["value"],
                "threshold": new["threshold"], "unit": new["unit"]}  # fmt: skip
        out.append((ev.ALARM_OVER, "info", data))
    return out


_FAULT_NAMES = tuple(CHANNEL_STATES[s] for s in FAULTS)
