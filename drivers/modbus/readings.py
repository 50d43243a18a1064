"""Register images to readings, and readings to events. Pure; no I/O.

A reading is a plain dict (it goes into state, telemetry and event data as it is). Port
readings use the profile's normalised names, so rules never see register numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from drivers.modbus import events as ev
from drivers.modbus.profiles import (
    ChargerProfile,
    Image,
    bits_named,
    block,
    ports_in,
    temperature_ok,
)
from gatewayd.model import Severity

EventSpec = tuple[str, Severity, dict[str, Any]]

# Faults that mean heat or a live conductor somebody did not ask for.
CRITICAL_FAULTS = frozenset({"over_temperature", "short_circuit", "relay_welded", "leakage"})
ACTIVE = frozenset({"charging", "full"})
# The registers' resolution (datasheet): a reading that moved by one step is a new sample.
TEMP_STEP_C = 0.1
POWER_STEP_W = 1
# How far a summary must move before the port blocks are read again at once.
SUMMARY_TEMP_STEP_C = 1.0
SUMMARY_POWER_STEP_W = 30
# A watched pile stays watched until every port is this far below the watch temperature, so
# a socket hovering at it does not switch the extra reads on and off every period.
WATCH_HYSTERESIS_C = 2.0


def decode_pile(profile: ChargerProfile, image: Image) -> dict[str, Any]:
    raw = block(image, profile.pile_base, profile.pile_regs)
    fw = int(raw["firmware"])
    cabinet = next(r for r in profile.pile_regs if r.name == "cabinet_c")
    cabinet_ok = temperature_ok(profile, image, profile.pile_base + cabinet.offset)
    return {
        "model": int(raw["model"]),
        "firmware": f"{fw >> 8}.{fw & 0xFF}",
        "port_count": int(raw["port_count"]),
        "status_bits": int(raw["status"]),
        # An open thermistor (0x7FFF, "3276.7 °C") is a broken sensor, not a cabinet fire.
        "cabinet_c": raw["cabinet_c"] if cabinet_ok else None,
        "cabinet_sensor_fault": not cabinet_ok,
        "mains_v": raw["mains_v"],
        "total_power_w": raw["total_power_w"],
    }


def decode_port(
    profile: ChargerProfile, image: Image, port: int, relay: bool | None
) -> dict[str, Any]:
    base, _ = profile.port_span(port)
    raw = block(image, base, profile.port_regs)
    temp_reg = next(r for r in profile.port_regs if r.name == "temperature_c")
    sensor_ok = temperature_ok(profile, image, base + temp_reg.offset)
    return {
        "port": port,
        "state": profile.states.get(int(raw["state"]), f"unknown_{raw['state']}"),
        "relay": relay,
        "voltage_v": raw["voltage_v"],
        "current_a": raw["current_a"],
        "power_w": raw["power_w"],
        "energy_wh": raw["energy_wh"],
        "temperature_c": raw["temperature_c"] if sensor_ok else None,
        "sensor_fault": not sensor_ok,
        "fault": profile.faults.get(int(raw["fault"]), f"code_{raw['fault']}"),
    }


def decode_summary(profile: ChargerProfile, image: Image, ports: int) -> dict[str, Any]:
    raw = block(image, profile.summary_base, profile.summary_regs)
    hot_reg = next(r for r in profile.summary_regs if r.name == "hottest_c")
    valid = temperature_ok(profile, image, profile.summary_base + hot_reg.offset)
    return {
        "hottest_c": raw["hottest_c"] if valid else None,
        "hottest_port": int(raw["hottest_port"]),
        "charging": ports_in(int(raw["charging"]), ports),
        "faulted": ports_in(int(raw["faulted"]), ports),
        "total_power_w": raw["total_power_w"],
        "status_bits": int(raw["status"]),
    }


def summary_changed(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a summary is worth reading the port blocks for, right away."""
    if prev is None:
        return True
    for key in ("hottest_port", "charging", "faulted", "status_bits"):
        if prev[key] != new[key]:
            return True
    if (prev["hottest_c"] is None) != (new["hottest_c"] is None):
        return True
    if (
        prev["hottest_c"] is not None
        and abs(new["hottest_c"] - prev["hottest_c"]) >= SUMMARY_TEMP_STEP_C
    ):
        return True
    return bool(abs(new["total_power_w"] - prev["total_power_w"]) >= SUMMARY_POWER_STEP_W)


def ports_to_refresh(
    prev: Mapping[str, Any] | None, new: Mapping[str, Any], ports: int
) -> list[int]:
    """The ports whose blocks a changed summary points at: active, faulted, changed, hottest."""
    if prev is None:
        return list(range(1, ports + 1))
    wanted = set(new["charging"]) | set(new["faulted"]) | {new["hottest_port"]}
    wanted |= set(prev["charging"]) ^ set(new["charging"])
    wanted |= set(prev["faulted"]) ^ set(new["faulted"])
    return sorted(p for p in wanted if 1 <= p <= ports)


def watch_cause(
    watching: bool,
    summary: Mapping[str, Any] | None,
    ports: Iterable[Mapping[str, Any]],
    watch_c: float,
    read: Collection[int] | None = None,
) -> str | None:
    """Why a pile's powered ports must be read at the fast period, or None if they need not.

    The summary names only the hottest port: while one port is hot (or was cut hot and is
    cooling), a second port crossing the cut threshold hides behind it. So a pile is watched
    while any reading is at or above ``watch_c`` (the summary's hottest port, or any port
    block), while a port is in the pile's own over-temperature fault (latched until cleared),
    and while the summary's hottest reading is a broken sensor (it then vouches for no port).
    Once watched, temperatures must fall ``WATCH_HYSTERESIS_C`` below ``watch_c`` to end it.
    Decided from readings only; the text is for the log.

    ``read``: the ports the watch reads (``watch_ports``); the temperature of any other port
    is taken from the summary only, since its block may be old (a port cut hot and since
    cooled would otherwise keep the pile watched until the next full read). Its fault counts.
    """
    level = watch_c - WATCH_HYSTERESIS_C if watching else watch_c
    hottest: tuple[float, int] | None = None
    for p in ports:
        if p["fault"] == "over_temperature":
            return f"port {p['port']} in over-temperature fault"
        temp = p["temperature_c"] if read is None or p["port"] in read else None
        if temp is not None and temp >= level and (hottest is None or temp > hottest[0]):
            hottest = (temp, p["port"])
    if summary is not None:
        temp = summary["hottest_c"]
        if temp is None and summary["hottest_port"]:
            return f"summary's hottest port {summary['hottest_port']} has a broken sensor"
        if temp is not None and temp >= level and (hottest is None or temp > hottest[0]):
            hottest = (temp, summary["hottest_port"])
    if hottest is None:
        return None
    return f"port {hottest[1]} at {hottest[0]:.1f} °C"


def at_rest(
    summary: Mapping[str, Any] | None, ports: Iterable[Mapping[str, Any]], watch_c: float
) -> bool:
    """Whether a pile may be polled at the idle period: nothing can be hot without current.

    At rest means the latest summary shows no port charging, no port in fault, no power, no
    status bit (a smoke input, cabinet heat, a pile fault, an open door, a tripped
    fail-safe: each keeps the fast period while it lasts), a hottest reading that is valid and
    below ``watch_c``; and no port's last block says it is active, draws power or is in
    fault (a ``full`` port floats under 30 W and is not in the charging bitmap). Decided from
    readings only: anything unknown (no summary yet, a broken hottest sensor) is not rest.
    """
    if summary is None or summary["charging"] or summary["faulted"]:
        return False
    if summary["total_power_w"] or summary["status_bits"]:
        return False
    if summary["hottest_c"] is None or summary["hottest_c"] >= watch_c:
        return False
    return not any(p["state"] in ACTIVE or p["power_w"] or p["fault"] != "none" for p in ports)


# Port states the datasheet gives a port whose relay is open: opened by command, or by the
# pile's own trip (a welded relay also reads "fault", but its coil reads closed).
RELAY_OPEN_STATES = frozenset({"disabled", "fault"})


def watch_ports(
    ports_n: int,
    relays: Sequence[bool],
    ports: Mapping[int, Mapping[str, Any]],
    summary: Mapping[str, Any] | None,
) -> list[int]:
    """The ports of a watched pile the watch reads: every port whose relay may be closed.

    A port whose relay is open carries no current, so there is nothing to cut there; its heat
    still shows in the summary and the full reads. A port is left out only when everything
    known agrees that its relay is open: the last coil read says open, its last port block
    says ``disabled`` or ``fault``, and the latest summary does not count it as charging (a
    port the pile switched on by itself, or one switched on after the coils were read, draws
    current there before anything else shows it). A port never read, or whose relay was never
    read, is watched.
    """
    charging = set(summary["charging"]) if summary is not None else set()
    out = []
    for p in range(1, ports_n + 1):
        relay = relays[p - 1] if p <= len(relays) else None
        reading = ports.get(p)
        open_ = (
            relay is False
            and reading is not None
            and reading["state"] in RELAY_OPEN_STATES
            and p not in charging
        )
        if not open_:
            out.append(p)
    return out


def port_events(
    prev: Mapping[str, Any] | None, new: Mapping[str, Any], status: Sequence[str]
) -> list[EventSpec]:
    """Session and fault transitions of one port between two readings."""
    out: list[EventSpec] = []
    port = new["port"]
    was = prev["state"] if prev else "idle"
    now = new["state"]
    if prev is not None and now == was and new["fault"] == prev["fault"]:
        return out
    if now in ACTIVE and was not in ACTIVE:
        out.append((ev.PORT_STARTED, "info", {"port": port}))
    if now == "full" and was != "full":
        out.append((ev.PORT_FULL, "info", {"port": port, "energy_wh": new["energy_wh"]}))
    if was in ACTIVE and now not in ACTIVE:
        out.append(
            (
                ev.PORT_STOPPED,
                "info",
                {"port": port, "reason": _stop_reason(now, new, status)},
            )
        )
    if new["fault"] != "none" and (prev is None or prev["fault"] != new["fault"]):
        sev: Severity = "critical" if new["fault"] in CRITICAL_FAULTS else "warning"
        out.append((ev.PORT_FAULT, sev, {"port": port, "fault": new["fault"]}))
    return out


def _stop_reason(now: str, new: Mapping[str, Any], status: Sequence[str]) -> str:
    if now == "fault":
        return f"fault:{new['fault']}"
    if now == "idle":
        return "unplugged"
    if "failsafe_tripped" in status:
        return "failsafe"
    if "pile_fault" in status:
        return "emergency_stop"
    return "relay_opened"


def status_events(profile: ChargerProfile, prev_bits: int | None, bits: int) -> list[EventSpec]:
    if prev_bits == bits or (prev_bits is None and bits == 0):
        return []
    before = set(bits_named(profile.status_bits, prev_bits or 0))
    after = set(bits_named(profile.status_bits, bits))
    raised = sorted(after - before)
    alarming = {"smoke_input", "cabinet_over_temperature", "failsafe_tripped", "pile_fault"}
    sev: Severity = "warning" if alarming & set(raised) else "info"
    return [
        (
            ev.STATUS,
            sev,
            {"set": raised, "cleared": sorted(before - after), "status": sorted(after)},
        )
    ]


def sample_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must change for a new ``charger.sample`` to be worth emitting: any reading at
    the registers' resolution (0.1 °C, 1 W), every state, relay and fault.

    Coarser steps would hide a threshold crossing from the rules: 59.8 → 60.1 °C is one
    0.5 °C step (both round to 120 halves), so the overheat rule never saw the socket over
    60 °C until something else in the key moved (found when the full reads' timing changed)."""

    def q(v: Any, step: float) -> Any:
        return None if v is None else round(v / step)

    if data["source"] == "summary":
        return (
            "s",
            q(data["hottest_c"], TEMP_STEP_C),
            data["hottest_port"],
            tuple(data["charging"]),
            tuple(data["faulted"]),
            q(data["total_power_w"], POWER_STEP_W),
            data["status_bits"],
        )
    ports = tuple(
        (
            p["port"],
            p["state"],
            p["relay"],
            q(p["power_w"], POWER_STEP_W),
            q(p["temperature_c"], TEMP_STEP_C),
            p["fault"],
        )
        for p in data["ports"]
    )
    return ("p", ports, q(data.get("cabinet_c"), TEMP_STEP_C), data["status_bits"])
