"""`gatewayd check --all` for a serial bus: does the SRB-433 receiver answer, and what is known
of its detectors. With the daemon running its view is used (it holds the port); otherwise the
receiver is PINGed. Only asks. ``SerialDriver.check_online`` calls this.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from gatewayd.cli.i18n import t
from gatewayd.driver import BusConfig, Check, DeviceConfig, Seen
from gatewayd.errors import ProbeError


def check_online(
    bus: BusConfig, devices: Sequence[DeviceConfig], seen: Seen | None
) -> Iterator[Check]:
    key = f"bus:{bus.name}"
    port = bus.settings["port"]
    if not os.path.exists(port):
        yield key, False, t("port_missing", bus=bus.name, port=port)
        return
    if seen is not None:
        rx = seen.gateway.get(f"receiver.{bus.name}", {})
        if rx.get("online"):
            yield (
                key,
                True,
                f"{bus.name}: receiver on {port} answers the daemon ({rx.get('paired', '?')} detectors paired)",
            )
        else:
            yield (
                key,
                False,
                f"{bus.name}: the receiver on {port} does not answer the daemon; replug it, check: gatewayd scan serial",
            )
        return
    from drivers.srb433.probe import find_receiver

    try:
        found = find_receiver(port, bus.settings.get("baudrate", 9600))
    except ProbeError as exc:
        yield key, False, f"{bus.name}: {exc}"
        return
    if found is None:
        yield (
            key,
            False,
            f"{bus.name}: no SRB-433 answer on {port}; is it the receiver? find it: gatewayd scan serial",
        )
    else:
        yield (
            key,
            True,
            f"{bus.name}: receiver on {port} answers (firmware {found.firmware}, {found.paired} detectors paired)",
        )
    for dev in devices:
        address = dev.settings["address"]
        yield (
            f"device:{dev.id}",
            None,
            f"{dev.id}: detector {address}: seen once the daemon runs (gatewayd status)",
        )
