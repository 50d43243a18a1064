"""`gatewayd scan serial|modbus|ble`: find the smoke receiver, the piles on a line, the locks
in range. Scans only ask (PING, read input register 0, listen to advertisements); long ones
show a progress bar and stop cleanly on Ctrl-C with what they found so far (exit 130).
Exit 0 when something was found, 3 when nothing was.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from gatewayd.cli import probes
from gatewayd.cli.common import (
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    USAGE,
    config_option,
    fail,
    json_option,
    parse_ids,
    print_json,
)

LOCK_SERVICE = "5a1e0000-7c1a-4d2b-9e3f-a0b1c2d3e4f5"  # DL-B2 datasheet
LOCK_NAME_PREFIX = "DL-B2"


@click.group()
def scan() -> None:
    """Find devices: the smoke receiver (serial), piles (modbus), locks (ble).

    \b
    Examples:
      gatewayd scan serial --add
      gatewayd scan modbus --port /dev/ttyUSB0 --baud 9600 --ids 1-32 --add
      gatewayd scan modbus --host 192.168.10.20 --ids 1-4
      gatewayd scan ble --seconds 10
    """


def _stable_names() -> dict[str, str]:
    """Real device path -> /dev/serial/by-id/ link (survives replugging into another port)."""
    out: dict[str, str] = {}
    base = "/dev/serial/by-id"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        link = os.path.join(base, name)
        out[os.path.realpath(link)] = link
    return out


def _serial_ports(every: bool) -> list[str]:
    """USB serial ports (the receiver is a USB device); ``every`` adds the board's own UARTs,
    which may be the console or the Bluetooth chip and are not probed unless asked."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports() if every or p.vid is not None)


@scan.command("serial")
@click.option("--port", "ports", multiple=True, help="Probe only this port (repeatable).")
@click.option("--all-ports", is_flag=True, help="Also the board's own UARTs (console, Bluetooth).")
@click.option("--baud", default=9600, show_default=True)
@click.option("--timeout", default=0.5, show_default=True, help="Seconds to wait for each answer.")
@click.option("--add", is_flag=True, help="Add the receiver to gateway.toml as a serial bus.")
@click.option(
    "--bus", "bus_name", default="smoke-rx", show_default=True, help="Bus name for --add."
)
@config_option
@json_option
def scan_serial(
    ports: tuple[str, ...],
    all_ports: bool,
    baud: int,
    timeout: float,
    add: bool,
    bus_name: str,
    config_path: str,
    as_json: bool,
) -> None:
    """Find the SRB-433 smoke receiver among the serial ports (PING, expect its status)."""
    stable = _stable_names()
    candidates = list(ports) or _serial_ports(all_ports)
    found: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for port in candidates:
        row: dict[str, Any] = {"port": port, "receiver": False}
        try:
            rx = probes.receiver_probe().find_receiver(port, baud, timeout)
        except probes.ProbeError as exc:
            row["error"] = str(exc).removeprefix(f"{port}: ")
        else:
            if rx is not None:
                row.update(receiver=True, firmware=rx.firmware, paired=rx.paired)
                row["stable_path"] = stable.get(os.path.realpath(port), os.path.abspath(port))
                found.append(row)
        rows.append(row)
        if not as_json:
            if row["receiver"]:
                click.echo(
                    f"✓ {port}: SRB-433 receiver, firmware {row['firmware']}, {row['paired']} detectors paired"
                )
            elif "error" in row:
                click.echo(f"✗ {port}: {row['error']}")
            else:
                click.echo(f"· {port}: no receiver")
    if add and found:
        _add_receiver(config_path, found[0]["stable_path"], baud, bus_name, as_json)
    if as_json:
        print_json(rows)
    elif not candidates:
        click.echo("no serial ports; is the receiver plugged in? (dmesg | tail)")
    elif not found:
        click.echo("no receiver found; plug it in, wait 5 s, and scan again")
    elif not add:
        click.echo(f"add it with: gatewayd scan serial --port {found[0]['stable_path']} --add")
    if not found:
        raise click.exceptions.Exit(NOT_FOUND)


def _add_receiver(config_path: str, port: str, baud: int, bus_name: str, quiet: bool) -> None:
    from gatewayd.cli.device import open_doc, save
    from gatewayd.cli.editing import EditError, add_bus, free_name

    doc = open_doc(config_path)
    for b in doc.tables("buses"):
        if b.get("driver") == "serial" and os.path.realpath(str(b.get("port"))) == os.path.realpath(
            port
        ):
            if not quiet:
                click.echo(f"✓ already configured as bus {b.get('name')}")
            return
    name = free_name({str(b.get("name")) for b in doc.tables("buses")}, bus_name)
    try:
        add_bus(
            doc,
            {"name": name, "driver": "serial", "port": port, "baudrate": baud},
            "the SRB-433 smoke receiver",
        )
    except EditError as exc:
        fail(str(exc), USAGE)
    save(doc)
    if not quiet:
        click.echo(
            f"✓ added bus {name} (serial, {port}) to {config_path}; next: gatewayd pair smoke"
        )


@scan.command("modbus")
@click.option("--port", help="RS-485 adapter, e.g. /dev/ttyUSB0 (RTU).")
@click.option("--baud", default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--host", help="Modbus TCP host instead of --port.")
@click.option("--tcp-port", default=502, show_default=True)
@click.option("--ids", default="1-32", show_default=True, help="Slave ids to try: 1-32 or 1,3,5-8.")
@click.option("--timeout", default=0.2, show_default=True, help="Seconds to wait for each id.")
@click.option("--add", is_flag=True, help="Add the piles found to gateway.toml (pile-<id>).")
@click.option(
    "--bus", "bus_name", default=None, help="Bus name for --add [default: rs485 or modbus-tcp]."
)
@config_option
@json_option
def scan_modbus(
    port: str | None,
    baud: int,
    parity: str,
    host: str | None,
    tcp_port: int,
    ids: str,
    timeout: float,
    add: bool,
    bus_name: str | None,
    config_path: str,
    as_json: bool,
) -> None:
    """Find charging piles on an RS-485 line or Modbus TCP: reads each id's model register and
    names the model by its profile."""
    if (port is None) == (host is None):
        fail("give --port (RS-485) or --host (Modbus TCP)", USAGE)
    units = parse_ids(ids)
    if port is not None and not os.path.exists(port):
        fail(
            f"{port}: no such port; is the RS-485 adapter plugged in? (gatewayd scan serial lists ports)",
            USAGE,
        )
    try:
        link = probes.modbus_probe().modbus_link(port, baud, parity, host, tcp_port)
    except probes.DriverMissing as exc:
        fail(f"{exc}: cannot scan for piles", FAILED)
    found: list[dict[str, Any]] = []

    async def run() -> None:
        try:
            with click.progressbar(
                units, label="scanning ids", file=sys.stderr, show_pos=True
            ) as bar:
                for unit in bar:
                    pile = await probes.modbus_probe().identify_pile(link, unit, timeout)
                    if pile is not None:
                        found.append(pile)
        finally:
            link.close()

    interrupted = False
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        interrupted = True
    where = port or f"{host}:{tcp_port}"
    if as_json:
        print_json([{**p, "where": where} for p in found])
    else:
        for p in found:
            click.echo(
                f"✓ id {p['unit']}: {p['label']} pile, firmware {p['firmware']}, {p['ports']} ports"
            )
        if interrupted:
            click.echo(f"✗ interrupted; {len(found)} piles found before that")
        elif not found:
            click.echo(f"no piles answered on {where}; check A/B wiring, the baud rate and the ids")
    if add and found and not interrupted:
        _add_piles(config_path, found, port, baud, parity, host, tcp_port, bus_name, as_json)
    elif found and not as_json and not interrupted:
        click.echo("add them with the same command and --add")
    if interrupted:
        raise click.exceptions.Exit(INTERRUPTED)
    if not found:
        raise click.exceptions.Exit(NOT_FOUND)


def _add_piles(
    config_path: str,
    found: list[dict[str, Any]],
    port: str | None,
    baud: int,
    parity: str,
    host: str | None,
    tcp_port: int,
    bus_name: str | None,
    quiet: bool,
) -> None:
    from gatewayd.cli.device import open_doc, save
    from gatewayd.cli.editing import EditError, add_bus, add_device, free_name

    doc = open_doc(config_path)
    bus = None
    for b in doc.tables("buses"):
        same = (
            port and b.get("port") and os.path.realpath(str(b["port"])) == os.path.realpath(port)
        ) or (host and b.get("host") == host and b.get("tcp_port", 502) == tcp_port)
        if b.get("driver") == "modbus" and same:
            bus = str(b["name"])
    if bus is None:
        bus = free_name(
            {str(b.get("name")) for b in doc.tables("buses")},
            bus_name or ("rs485" if port else "modbus-tcp"),
        )
        table: dict[str, Any] = {"name": bus, "driver": "modbus"}
        if port:
            table.update(port=port, baudrate=baud, parity=parity)
        else:
            table.update(host=host, tcp_port=tcp_port)
        add_bus(doc, table, "charging piles")
    taken_ids = {str(d.get("id")) for d in doc.tables("devices")}
    added = []
    for p in found:
        if any(d.get("bus") == bus and d.get("unit") == p["unit"] for d in doc.tables("devices")):
            if not quiet:
                click.echo(f"· id {p['unit']}: already configured")
            continue
        dev_id = free_name(taken_ids, f"pile-{p['unit']}")
        taken_ids.add(dev_id)
        try:
            add_device(doc, {"id": dev_id, "kind": p["kind"], "bus": bus, "unit": p["unit"]})
        except EditError as exc:
            fail(str(exc), USAGE)
        added.append(dev_id)
    save(doc)
    if not quiet:
        click.echo(f"✓ added {', '.join(added) or 'nothing new'} on bus {bus} to {config_path}")


@scan.command("ble")
@click.option("--seconds", default=8.0, show_default=True, help="How long to listen.")
@click.option("--adapter", default="hci0", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every device heard, not only DL-B2 locks.")
@config_option
@json_option
def scan_ble(seconds: float, adapter: str, show_all: bool, config_path: str, as_json: bool) -> None:
    """List the DL-B2 locks in range with their signal strength (RSSI)."""
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
        is_lock = LOCK_SERVICE in uuids or name.startswith(LOCK_NAME_PREFIX)
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
                "add one: gatewayd device add door-main --kind door_lock --bus ble --address ADDRESS --key-file FILE"
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
