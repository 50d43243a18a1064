"""`gatewayd scan ble`: list the DL-B2 locks in range with their signal strength, by listening
to advertisements (no connection), and with ``--add`` put the Bluetooth bus and the lock in
gateway.toml (``drivers.ble.adding``). The ble driver declares this command
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
from gatewayd.cli.i18n import t


@click.command("ble")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--seconds", default=8.0, show_default=True, help="How long to listen.")
@click.option("--adapter", default="hci0", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every device heard, not only DL-B2 locks.")
@click.option("--add", is_flag=True, help="Add the Bluetooth bus (if missing) and the locks heard.")
@click.option("--key-file", help="--add: the lock's key file (32 hex digits, mode 0600).")
@click.option("--address", "only", help="--add: the lock to add, when several are heard.")
@click.option("--id", "dev_id", help="--add: the lock's device id [default: door-main].")
@click.option("--bus", "bus_name", help="--add: the bus name [default: ble].")
@config_option
@json_option
def scan_ble(
    settings: tuple[str, ...],
    seconds: float,
    adapter: str,
    show_all: bool,
    add: bool,
    key_file: str | None,
    only: str | None,
    dev_id: str | None,
    bus_name: str | None,
    config_path: str,
    as_json: bool,
) -> None:
    """List the DL-B2 locks in range with their signal strength (RSSI); with --add, add the
    Bluetooth bus and the lock to gateway.toml (each lock needs its key file: --key-file, or
    asked for at the terminal); other keys of a lock as KEY=VALUE (escape_route=true).

    \b
    Examples:
      gatewayd scan ble --seconds 10
      gatewayd scan ble --add --key-file /etc/gatewayd/door-main.key escape_route=true
      gatewayd scan ble --add --address C0:FF:EE:00:00:02 --id door-back --key-file FILE
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
        fail(t("ble_no_adapter", adapter=adapter, reason=exc or type(exc).__name__), FAILED)
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
            note = t("ble_configured", device=r["configured_as"]) if r["configured_as"] else ""
            click.echo(f"{r['address']}  {r['name'] or '?':<14} RSSI {r['rssi']} dBm{note}")
        if not rows:
            click.echo(t("ble_none"))
        elif not add and any(not r["configured_as"] for r in rows):
            click.echo(t("ble_add_hint", kind=DoorFamily.kind))
    new = [str(r["address"]) for r in rows if r["lock"] and not r["configured_as"]]
    if add:
        from drivers.ble.adding import add_locks
        from gatewayd.cli.device import key_values

        extra = key_values(settings)
        add_locks(config_path, adapter, new, only, key_file, dev_id, bus_name, extra, as_json)
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
