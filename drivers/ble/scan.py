"""`gatewayd scan ble`: list the DL-B2 locks in range with their signal strength, by listening
to advertisements (no connection). The ble driver declares this command
(``BleDriver.commands``).
"""

from __future__ import annotations

import asyncio
import os

import click

from drivers.ble.family import DoorFamily
from drivers.ble.protocol import NAME_PREFIX, SERVICE_UUID
from gatewayd.cli.common import (
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    config_option,
    fail,
    json_option,
    print_json,
)


@click.command("ble")
@click.option("--seconds", default=8.0, show_default=True, help="How long to listen.")
@click.option("--adapter", default="hci0", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every device heard, not only DL-B2 locks.")
@config_option
@json_option
def scan_ble(seconds: float, adapter: str, show_all: bool, config_path: str, as_json: bool) -> None:
    """List the DL-B2 locks in range with their signal strength (RSSI).

    \b
    Examples:
      gatewayd scan ble --seconds 10
      gatewayd scan ble --all --json              # every device heard, for a script
    """
    from gatewayd.cli.device import open_doc

    configured: dict[str, str] = {}
    if os.path.exists(config_path):
        configured = {
            str(d.get("address", "")).upper(): str(d.get("id"))
            for d in open_doc(config_path).tables("devices")
        }

    try:
        heard = asyncio.run(_discover(seconds, adapter))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - bleak raises several kinds for "no Bluetooth here"
        fail(f"Bluetooth {adapter}: {exc or type(exc).__name__}; check: bluetoothctl list", FAILED)
    rows = []
    for address, name, rssi, uuids in heard:
        is_lock = SERVICE_UUID in uuids or name.startswith(NAME_PREFIX)
        if is_lock or show_all:
            rows.append(
                {
                    "address": address,
                    "name": name,
                    "rssi": rssi,
                    "lock": is_lock,
                    "configured_as": configured.get(address),
                }
            )
    rows.sort(key=lambda r: -int(r["rssi"] if r["rssi"] is not None else -999))
    if as_json:
        print_json(rows)
    else:
        for r in rows:
            note = f"  (configured: {r['configured_as']})" if r["configured_as"] else ""
            click.echo(f"{r['address']}  {r['name'] or '?':<14} RSSI {r['rssi']} dBm{note}")
        if not rows:
            click.echo("no locks heard; is the lock powered and within 10 m?")
        elif any(not r["configured_as"] for r in rows):
            click.echo(
                f"add one: gatewayd device add door-main --kind {DoorFamily.kind} --bus ble "
                "--address ADDRESS --key-file FILE"
            )
    if not rows:
        raise click.exceptions.Exit(NOT_FOUND)


async def _discover(seconds: float, adapter: str) -> list[tuple[str, str, int | None, list[str]]]:
    from bleak import BleakScanner

    try:
        devices = await BleakScanner.discover(
            timeout=seconds, return_adv=True, bluez={"adapter": adapter}
        )
        return [
            (
                dev.address.upper(),
                adv.local_name or dev.name or "",
                adv.rssi,
                [u.lower() for u in adv.service_uuids],
            )
            for dev, adv in devices.values()
        ]
    finally:
        from drivers.ble.probe import close_bleak

        await close_bleak()
