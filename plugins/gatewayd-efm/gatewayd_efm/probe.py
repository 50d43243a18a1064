"""Short, safe probes of an EFM-4 for the CLI on site: whether the unit at an id is one (a
bus scan, ``ElectricalFamily.identify``: input register 0 reads 0x4546), and what it says
(`gatewayd test`, without the daemon). Only reads; never trips or resets anything."""

from __future__ import annotations

from typing import Any

from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import GatewayError, ProbeError
from gatewayd.family import Found
from gatewayd_efm import codec
from gatewayd_efm.profile import PROFILES, EfmProfile


async def _identity(
    link: Any, unit: int, timeout: float
) -> tuple[EfmProfile, dict[str, Any]] | None:
    for profile in PROFILES.values():
        start, count = profile.identity_span()
        regs = await link.read_registers(unit, start, count, timeout)
        identity = codec.decode_identity(profile, regs)
        if identity["model"] == profile.model_id:
            return profile, identity
    return None


async def identify(link: Any, unit: int, timeout: float) -> Found | None:
    try:
        found = await _identity(link, unit, timeout)
    except GatewayError:
        return None
    if found is None:
        return None
    profile, identity = found
    default = "efm4"
    return Found(
        kind="electrical",
        summary=f"{profile.label} electrical fire detector, firmware {identity['firmware']}, "
        f"{identity['channels']} channels",
        details={
            "model": profile.name,
            "label": profile.label,
            "firmware": identity["firmware"],
            "channels": identity["channels"],
        },
        settings={} if profile.name == default else {"profile": profile.name},
    )


async def read_all(link: Any, unit: int, timeout: float = 1.0) -> dict[str, Any]:
    """Identity, status, channels and the trip output, decoded: what `gatewayd test` shows."""
    try:
        found = await _identity(link, unit, timeout)
        if found is None:
            raise ProbeError(f"unit {unit}: answers, but is not an electrical fire detector")
        profile, identity = found
        types = await link.read_registers(unit, *profile.types_span(), timeout)
        settings = await link.read_registers(unit, *profile.settings_span(), timeout, holding=True)
        regs = await link.read_registers(unit, *profile.channels_span(), timeout)
        tripped = (await link.read_coils(unit, profile.trip_coil, 1, timeout))[0]
    except GatewayError as exc:
        raise ProbeError(f"unit {unit}: {exc}") from None
    thresholds = settings[profile.threshold_base : profile.threshold_base + profile.channels]
    return {
        **identity,
        "status": codec.status_names(identity["status_bits"]),
        "channels": codec.decode_channels(profile, types, regs, thresholds),
        "tripped": bool(tripped),
    }


def self_test(device: DeviceConfig, bus: BusConfig) -> tuple[bool, dict[str, Any]]:
    """`gatewayd test EFM` without the daemon: the detector read directly."""
    import asyncio

    from drivers.modbus.probe import modbus_link

    s = bus.settings
    link = modbus_link(
        s.get("port"), s["baudrate"], s.get("parity", "N"), s.get("host"), s["tcp_port"]
    )

    async def read() -> dict[str, Any]:
        try:
            return await read_all(link, int(device.settings["unit"]))
        finally:
            link.close()

    seen = asyncio.run(read())
    details: dict[str, Any] = {"unit": device.settings["unit"], "firmware": seen["firmware"]}
    for c in seen["channels"]:
        value = "no reading" if c["value"] is None else f"{c['value']} {c['unit']}"
        details[f"channel {c['channel']}"] = f"{c['type']}: {c['state']}, {value}"
    details["breaker"] = "tripped" if seen["tripped"] else "not tripped"
    details["status"] = ", ".join(seen["status"]) or "normal"
    healthy = all(c["state"] == "normal" for c in seen["channels"]) and not seen["status"]
    return healthy, details
