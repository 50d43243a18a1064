"""Short, safe probes of Modbus devices for the CLI on site: who answers at this id, and what
a pile's summary says. Only reads input registers; never switches a relay.

Which model answers is told by the profiles (``drivers.modbus.profiles``): a second pile model
is found by its profile, with no change here.
"""

from __future__ import annotations

from typing import Any

from drivers.modbus.family import ChargerFamily
from drivers.modbus.profiles import PROFILES, bits_named
from drivers.modbus.readings import decode_pile, decode_summary
from gatewayd.errors import DriverMissing, GatewayError, ProbeError


def modbus_link(
    port: str | None, baudrate: int, parity: str, host: str | None, tcp_port: int
) -> Any:
    try:
        from drivers.modbus.transport import LinkConfig, PymodbusLink
    except ImportError as exc:
        raise DriverMissing(f"the Modbus driver is not installed ({exc.name})") from None
    return PymodbusLink(LinkConfig(port, baudrate, parity, host, tcp_port))


async def identify_pile(link: Any, unit: int, timeout: float) -> dict[str, Any] | None:
    """Model, firmware and port count of the pile at ``unit``, by whichever profile knows its
    model register; None when nobody answers or no profile knows the answer."""
    try:
        return await _identify(link, unit, timeout)
    except GatewayError:
        return None


async def _identify(link: Any, unit: int, timeout: float) -> dict[str, Any] | None:
    """As ``identify_pile``, but a silent or failing unit raises its error."""
    spans = {(p.pile_base, p.pile_span()[1]) for p in PROFILES.values()}
    for base, count in sorted(spans):
        regs = await link.read_registers(unit, base, count, timeout)
        image = dict(enumerate(regs, base))
        for profile in PROFILES.values():
            if (profile.pile_base, profile.pile_span()[1]) != (base, count):
                continue
            pile = decode_pile(profile, image)
            if pile["model"] == profile.model_id:
                return {
                    "unit": unit,
                    "kind": ChargerFamily.kind,
                    "model": profile.name,
                    "label": profile.label,
                    "firmware": pile["firmware"],
                    "ports": pile["port_count"],
                }
    return None


async def pile_summary(link: Any, unit: int, timeout: float = 1.0) -> dict[str, Any]:
    """The pile block and the summary block, decoded: what `gatewayd test` shows."""
    try:
        found = await _identify(link, unit, timeout)
    except GatewayError as exc:
        raise ProbeError(f"unit {unit}: {exc}") from None
    if found is None:
        raise ProbeError(f"unit {unit}: answers, but is not a pile this gateway knows")
    profile = PROFILES[found["model"]]
    try:
        base, count = profile.pile_span()
        pile = decode_pile(
            profile, dict(enumerate(await link.read_registers(unit, base, count, timeout), base))
        )
        base, count = profile.summary_span()
        summary_regs = await link.read_registers(unit, base, count, timeout)
    except GatewayError as exc:
        raise ProbeError(f"unit {unit}: {exc}") from None
    summary = decode_summary(profile, dict(enumerate(summary_regs, base)), pile["port_count"])
    summary["status"] = bits_named(profile.status_bits, summary.pop("status_bits"))
    return {**pile, "model_name": profile.name, **summary}


def self_test(dev: Any, bus: Any) -> tuple[bool, dict[str, Any]]:
    """`gatewayd test PILE` without the daemon: the pile's summary, read directly."""
    import asyncio

    s = bus.settings
    link = modbus_link(
        s.get("port"), s["baudrate"], s.get("parity", "N"), s.get("host"), s["tcp_port"]
    )

    async def read() -> dict[str, Any]:
        try:
            return await pile_summary(link, dev.settings["unit"])
        finally:
            link.close()

    summary = asyncio.run(read())
    details = {
        "unit": dev.settings["unit"],
        "model": summary["model_name"],
        "firmware": summary["firmware"],
        "ports": summary["port_count"],
        "hottest": f"{summary['hottest_c']} °C (port {summary['hottest_port']})",
        "charging": ", ".join(map(str, summary["charging"])) or "none",
        "in fault": ", ".join(map(str, summary["faulted"])) or "none",
        "power": f"{summary['total_power_w']} W",
        "status": ", ".join(summary["status"]) or "normal",
    }
    return not summary["faulted"] and not summary["status"], details
