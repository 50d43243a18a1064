"""`gatewayd check --all` for a Modbus bus: is the line there (the adapter, or the TCP host),
and does each device answer. With the daemon running its view is used (it holds the line);
otherwise each device's own family is asked whether the unit is one of theirs (``identify``),
so a plugin's device on the line is checked as a pile is. Only reads.
``ModbusDriver.check_online`` calls this.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence

from drivers.modbus.probe import modbus_link, whose
from gatewayd import plugins
from gatewayd.cli.i18n import t
from gatewayd.cli.probes import tcp_reachable
from gatewayd.driver import BusConfig, Check, DeviceConfig, Seen
from gatewayd.errors import DriverMissing, ProbeError
from gatewayd.family import Found


def check_online(
    bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
) -> Iterator[Check]:
    key, s = f"bus:{bus.name}", bus.settings
    if s.get("port"):
        if not os.path.exists(s["port"]):
            yield key, False, t("port_missing", bus=bus.name, port=s["port"])
            return
        yield key, True, t("port_ok", bus=bus.name, port=s["port"])
    else:
        host, port = s["host"], s["tcp_port"]
        try:
            tcp_reachable(host, port)
        except ProbeError as exc:
            yield key, False, t("host_bad", bus=bus.name, host=host, port=port, reason=exc)
            return
        yield key, True, t("host_ok", bus=bus.name, host=host, port=port)
    if seen is not None:
        for dev in devices:
            online = seen.states.get(dev.id, {}).get("online")
            how = (
                "online" if online else "offline in the daemon; check wiring A/B, address and baud"
            )
            yield f"device:{dev.id}", bool(online), f"{dev.id} (unit {dev.settings['unit']}): {how}"
        return
    try:
        link = modbus_link(
            s.get("port"), s["baudrate"], s.get("parity", "N"), s.get("host"), s["tcp_port"]
        )
    except DriverMissing as exc:
        yield key, None, f"{bus.name}: {exc}"
        return
    families = plugins.families()

    async def ask_each() -> list[Found | None]:
        """Each device's own family, whether the unit is theirs."""
        answers: list[Found | None] = []
        try:
            for d in devices:
                own = [families[d.kind]] if d.kind in families else []
                answers.append(await whose(own, link, unit(d), 0.5))
        finally:
            link.close()
        return answers

    for dev, found in zip(devices, asyncio.run(ask_each()), strict=True):
        where = f"{dev.id} (unit {unit(dev)})"
        if found is not None:
            yield f"device:{dev.id}", True, f"{where}: {found.summary}"
        else:
            title = families[dev.kind].title if dev.kind in families else dev.kind
            yield (
                f"device:{dev.id}",
                False,
                f"{where}: no answer; check wiring A/B, the {title}'s address and baud rate",
            )


def unit(device: DeviceConfig) -> int:
    return int(device.settings["unit"])
