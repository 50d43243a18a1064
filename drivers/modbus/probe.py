"""Short, safe probes of Modbus devices for the CLI on site: whose device answers at this id
(every family on Modbus is asked: ``whose``), and what a pile's summary says. Only reads;
never switches a relay.

Which model answers is told by the profiles (``drivers.modbus.profiles``): a second pile model
is found by its profile, with no change here.
"""

from __future__ import annotations

from typing import Any

from drivers.modbus.driver import ModbusDriver
from drivers.modbus.family import ChargerFamily
from drivers.modbus.profiles import PROFILES, ChargerProfile, bits_named
from drivers.modbus.readings import decode_pile, decode_summary
from gatewayd.cli.i18n import t
from gatewayd.errors import DeviceTimeout, DriverMissing, GatewayError, ProbeError
from gatewayd.family import Family, Found

BUS = ModbusDriver.name


def modbus_link(
    port: str | None, baudrate: int, parity: str, host: str | None, tcp_port: int
) -> Any:
    try:
        from drivers.modbus.transport import LinkConfig, PymodbusLink
    except ImportError as exc:
        raise DriverMissing(f"the Modbus driver is not installed ({exc.name})") from None
    return PymodbusLink(LinkConfig(port, baudrate, parity, host, tcp_port))


class AskedOnce:
    """A scan's link: a unit that stayed silent for one family's question is not asked again
    by the next family's (a silent id would otherwise cost one timeout per family)."""

    def __init__(self, link: Any) -> None:
        self.link = link
        self.silent: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    async def read_registers(
        self, unit: int, address: int, count: int, timeout: float, *, holding: bool = False
    ) -> list[int]:
        if unit in self.silent:
            raise DeviceTimeout(f"unit {unit}", "no reply")
        try:
            regs: list[int] = await self.link.read_registers(
                unit, address, count, timeout, holding=holding
            )
        except DeviceTimeout:
            self.silent.add(unit)
            raise
        return regs

    async def read_coils(self, unit: int, address: int, count: int, timeout: float) -> list[bool]:
        if unit in self.silent:
            raise DeviceTimeout(f"unit {unit}", "no reply")
        try:
            bits: list[bool] = await self.link.read_coils(unit, address, count, timeout)
        except DeviceTimeout:
            self.silent.add(unit)
            raise
        return bits


def families_on_modbus() -> list[Family]:
    """The device families a Modbus scan asks, in the order of their kinds."""
    from gatewayd import plugins

    return [f for _, f in sorted(plugins.families().items()) if BUS in f.buses]


async def whose(families: list[Family], link: Any, unit: int, timeout: float) -> Found | None:
    """The first of ``families`` that says the device at ``unit`` is theirs (``identify``)."""
    for family in families:
        try:
            found = await family.identify(BUS, link, unit, timeout)
        except GatewayError:
            found = None
        if found is not None:
            return found
    return None


async def identify(link: Any, unit: int, timeout: float) -> Found | None:
    """The charger family's answer to a bus scan (``ChargerFamily.identify``): the pile at
    ``unit``, its model named by whichever profile knows its model register; None when nobody
    answers or no profile knows the answer."""
    try:
        found = await _identify(link, unit, timeout)
    except GatewayError:
        return None
    if found is None:
        return None
    profile, pile = found
    default = ChargerFamily.schema()["profile"].default
    return Found(
        kind=ChargerFamily.kind,
        summary=f"{profile.label} pile, firmware {pile['firmware']}, {pile['port_count']} ports",
        details={
            "model": profile.name,
            "label": profile.label,
            "firmware": pile["firmware"],
            "ports": pile["port_count"],
        },
        settings={} if profile.name == default else {"profile": profile.name},
    )


async def _identify(
    link: Any, unit: int, timeout: float
) -> tuple[ChargerProfile, dict[str, Any]] | None:
    """The profile that knows the pile at ``unit`` and its pile block, decoded; a silent or
    failing unit raises its error."""
    spans = {(p.pile_base, p.pile_span()[1]) for p in PROFILES.values()}
    for base, count in sorted(spans):
        regs = await link.read_registers(unit, base, count, timeout)
        image = dict(enumerate(regs, base))
        for profile in PROFILES.values():
            if (profile.pile_base, profile.pile_span()[1]) != (base, count):
                continue
            pile = decode_pile(profile, image)
            if pile["model"] == profile.model_id:
                return profile, pile
    return None


async def pile_summary(link: Any, unit: int, timeout: float = 1.0) -> dict[str, Any]:
    """The pile block and the summary block, decoded: what `gatewayd test` shows."""
    try:
        found = await _identify(link, unit, timeout)
    except GatewayError as exc:
        raise ProbeError(f"unit {unit}: {exc}") from None
    if found is None:
        raise ProbeError(f"unit {unit}: answers, but is not a pile this gateway knows")
    profile, pile = found
    try:
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
        "hottest": t("selftest_hottest", c=summary["hottest_c"], port=summary["hottest_port"]),
        "charging": ", ".join(map(str, summary["charging"])) or t("selftest_none"),
        "in fault": ", ".join(map(str, summary["faulted"])) or t("selftest_none"),
        "power": f"{summary['total_power_w']} W",
        "status": ", ".join(summary["status"]) or t("selftest_normal"),
    }
    return not summary["faulted"] and not summary["status"], details
