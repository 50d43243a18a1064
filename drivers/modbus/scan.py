"""`gatewayd scan modbus`: find the devices on an RS-485 line or Modbus TCP, and add them.

The line is this driver's; what answers at an id is for the device families to say. Every
family whose ``buses`` include "modbus" is asked in turn (``Family.identify``) until one knows
the unit, so a plugin's family sharing the line with the piles is found by the same scan and
added with the kind its identifier reported and its own id prefix (``Family.new_id``). Only
reads. A long scan shows a progress bar and stops cleanly on Ctrl-C with what it found so far
(exit 130); exit 0 when something was found, 3 when nothing was. The modbus driver declares
this command (``ModbusDriver.commands``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from drivers.modbus.probe import BUS, AskedOnce, families_on_modbus, modbus_link, whose
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
from gatewayd.cli.i18n import t
from gatewayd.cli.lines import serial_problem, tcp_problem
from gatewayd.errors import DriverMissing
from gatewayd.family import Found


@click.command("modbus")
@click.option("--port", help="RS-485 adapter, e.g. /dev/ttyUSB0 (RTU).")
@click.option("--baud", default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--host", help="Modbus TCP host instead of --port.")
@click.option("--tcp-port", default=502, show_default=True)
@click.option("--ids", default="1-32", show_default=True, help="Slave ids to try: 1-32 or 1,3,5-8.")
@click.option("--timeout", default=0.2, show_default=True, help="Seconds to wait for each id.")
@click.option("--add", is_flag=True, help="Add what was found to gateway.toml (piles: pile-<id>).")
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
    """Find charging piles, and whatever else the installed device families know, on an
    RS-485 line or Modbus TCP: each id is asked by every family on Modbus whether it is
    theirs (a pile by its model register, named by its profile).

    \b
    Examples:
      gatewayd scan modbus --port /dev/ttyUSB0 --baud 9600 --ids 1-32 --add
      gatewayd scan modbus --host 192.168.10.20 --ids 1-4
    """
    if (port is None) == (host is None):
        fail("give --port (RS-485) or --host (Modbus TCP)", USAGE)
    units = parse_ids(ids)
    if port is not None and not os.path.exists(port):
        fail(
            f"{port}: no such port; is the RS-485 adapter plugged in? (gatewayd scan serial lists ports)",
            USAGE,
        )
    problem = serial_problem(config_path, port) if port else tcp_problem(str(host), tcp_port)
    if problem is not None:  # say what happened, not "check the wiring"
        fail(problem, FAILED)
    families = families_on_modbus()
    what = " or ".join(f.several() for f in families) or "devices"
    many = what if len(families) == 1 else "devices"  # "3 piles found", "3 devices found"
    try:
        link = AskedOnce(modbus_link(port, baud, parity, host, tcp_port))
    except DriverMissing as exc:
        fail(f"{exc}: cannot scan for {what}", FAILED)
    found: list[tuple[int, Found]] = []

    async def run() -> None:
        try:
            with click.progressbar(
                units, label="scanning ids", file=sys.stderr, show_pos=True
            ) as bar:
                for unit in bar:
                    hit = await whose(families, link, unit, timeout)
                    if hit is not None:
                        found.append((unit, hit))
        finally:
            link.close()

    interrupted = False
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        interrupted = True
    where = port or f"{host}:{tcp_port}"
    if as_json:
        print_json([{"unit": u, "kind": f.kind, **f.details, "where": where} for u, f in found])
    else:
        for unit, hit in found:
            click.echo(f"✓ id {unit}: {hit.summary}")
        if interrupted:
            click.echo(f"✗ interrupted; {len(found)} {many} found before that")
        elif not found:
            click.echo(
                f"no {what} answered on {where}; check A/B wiring, the baud rate and the ids"
            )
    if add and found and not interrupted:
        line: dict[str, Any] = (
            {"port": port, "baudrate": baud, "parity": parity}
            if port
            else {"host": host, "tcp_port": tcp_port}
        )
        _add_found(config_path, found, line, bus_name, as_json)
    elif found and not as_json and not interrupted:
        click.echo("add them with the same command and --add")
    if interrupted:
        raise click.exceptions.Exit(INTERRUPTED)
    if not found:
        raise click.exceptions.Exit(NOT_FOUND)


def _same_line(bus: dict[str, Any], line: dict[str, Any]) -> bool:
    """Whether the configured ``bus`` is the line just scanned (the same adapter or host)."""
    if bus.get("driver") != BUS:
        return False
    if line.get("port"):
        port = bus.get("port")
        return bool(port) and os.path.realpath(str(port)) == os.path.realpath(line["port"])
    return bool(bus.get("host") == line["host"] and bus.get("tcp_port", 502) == line["tcp_port"])


def _add_found(
    config_path: str,
    found: list[tuple[int, Found]],
    line: dict[str, Any],
    bus_name: str | None,
    quiet: bool,
) -> None:
    """Add the devices found, on the bus of this line (added first when there is none)."""
    from gatewayd import plugins
    from gatewayd.cli.device import open_doc, save
    from gatewayd.cli.editing import EditError, add_bus, add_device, free_name

    doc = open_doc(config_path)
    bus = next((str(b["name"]) for b in doc.tables("buses") if _same_line(b, line)), None)
    if bus is not None and bus_name is not None and bus_name != bus and not quiet:
        where = line.get("port") or f"{line['host']}:{line['tcp_port']}"
        click.echo(f"· {t('scan_bus_exists', where=where, bus=bus, asked=bus_name)}")
    if bus is None:
        bus = free_name(
            {str(b.get("name")) for b in doc.tables("buses")},
            bus_name or ("rs485" if line.get("port") else "modbus-tcp"),
        )
        titles = sorted({f"{plugins.family(hit.kind).title}s" for _, hit in found})
        add_bus(doc, {"name": bus, "driver": BUS, **line}, ", ".join(titles))
    taken_ids = {str(d.get("id")) for d in doc.tables("devices")}
    added = []
    for unit, hit in found:
        if any(d.get("bus") == bus and d.get("unit") == unit for d in doc.tables("devices")):
            if not quiet:
                click.echo(f"· id {unit}: already configured")
            continue
        dev_id = free_name(taken_ids, plugins.family(hit.kind).new_id(unit))
        taken_ids.add(dev_id)
        table = {"id": dev_id, "kind": hit.kind, "bus": bus, "unit": unit, **hit.settings}
        try:
            add_device(doc, table)
        except EditError as exc:
            fail(str(exc), USAGE)
        added.append(dev_id)
    save(doc)
    if not quiet:
        click.echo(f"✓ added {', '.join(added) or 'nothing new'} on bus {bus} to {config_path}")
