"""`gatewayd scan serial`: find the SRB-433 smoke receiver among the serial ports (PING, expect
its status), and add it to gateway.toml as a bus. Only asks. The serial driver declares this
command (``SerialDriver.commands``).
"""

from __future__ import annotations

import os
from typing import Any

import click

from drivers.srb433.driver import SerialDriver
from gatewayd.cli.common import NOT_FOUND, USAGE, config_option, fail, json_option, print_json
from gatewayd.errors import ProbeError


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


@click.command("serial")
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
    """Find the SRB-433 smoke receiver among the serial ports (PING, expect its status).

    \b
    Examples:
      gatewayd scan serial --add
      gatewayd scan serial --port /dev/ttyUSB1 --json
    """
    from drivers.srb433.probe import find_receiver

    stable = _stable_names()
    candidates = list(ports) or _serial_ports(all_ports)
    found: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for port in candidates:
        row: dict[str, Any] = {"port": port, "receiver": False}
        try:
            rx = find_receiver(port, baud, timeout)
        except ProbeError as exc:
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
        if b.get("driver") == SerialDriver.name and os.path.realpath(
            str(b.get("port"))
        ) == os.path.realpath(port):
            if not quiet:
                click.echo(f"✓ already configured as bus {b.get('name')}")
            return
    name = free_name({str(b.get("name")) for b in doc.tables("buses")}, bus_name)
    try:
        add_bus(
            doc,
            {"name": name, "driver": SerialDriver.name, "port": port, "baudrate": baud},
            "the SRB-433 smoke receiver",
        )
    except EditError as exc:
        fail(str(exc), USAGE)
    save(doc)
    if not quiet:
        click.echo(
            f"✓ added bus {name} (serial, {port}) to {config_path}; next: gatewayd pair smoke"
        )
