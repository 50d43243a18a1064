"""`gatewayd bus add|remove|list`: the [[buses]] of gateway.toml, edited in place.

A bus is a wire the gateway talks on (an RS-485 adapter, the smoke receiver's port, the
Bluetooth adapter); its keys are its driver's (``Driver.bus_schema``), checked before the file
is replaced, comments kept (gatewayd.cli.editing). A bus that devices still use is not removed
unless they go with it (``--with-devices``). A running daemon picks changes up on reload.
"""

from __future__ import annotations

from typing import Any

import click

from gatewayd.cli.common import NOT_FOUND, USAGE, config_option, fail, json_option, print_json
from gatewayd.cli.device import key_values, open_doc, save, typed_value
from gatewayd.cli.editing import EditError, add_bus, remove_bus, remove_device
from gatewayd.cli.i18n import say, t
from gatewayd.cli.show import columns


@click.group()
def bus() -> None:
    """Add, remove and list the buses in gateway.toml (the wires devices hang on).

    \b
    Examples:
      gatewayd bus add ble --driver ble                       # the Pi's Bluetooth (hci0)
      gatewayd bus add rs485 --driver modbus port=/dev/ttyUSB0 baudrate=9600
      gatewayd bus add smoke-rx --driver serial port=/dev/ttyUSB1
      gatewayd bus list
      gatewayd bus remove rs485 --with-devices
    """


def _drivers() -> list[str]:
    from gatewayd import plugins

    return list(plugins.driver_names())


def bus_table(name: str, driver_name: str, settings: dict[str, str]) -> dict[str, Any]:
    """The [[buses]] table for ``settings`` typed by the driver's schema."""
    from gatewayd import plugins
    from gatewayd.errors import PluginError

    try:
        driver = plugins.load_driver(driver_name)
    except PluginError as exc:
        fail(say(exc), USAGE)
    table: dict[str, Any] = {"name": name, "driver": driver_name}
    for key, text in settings.items():
        table[key] = typed_value(key, text, dict(driver.bus_schema))
    return table


@bus.command("add")
@click.argument("name")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--driver", "driver_name", required=True, type=click.Choice(sorted(_drivers())))
@config_option
@json_option
def bus_add(
    name: str, settings: tuple[str, ...], driver_name: str, config_path: str, as_json: bool
) -> None:
    """Add bus NAME run by DRIVER; its driver's keys as KEY=VALUE."""
    doc = open_doc(config_path)
    table = bus_table(name, driver_name, key_values(settings))
    try:
        add_bus(doc, table)
    except EditError as exc:
        fail(say(exc), USAGE)
    save(doc)
    if as_json:
        print_json(table)
        return
    click.echo(f"✓ {t('bus_added', bus=name, driver=driver_name, path=config_path)}")
    click.echo(f"  {t('bus_next', bus=name)}")


@bus.command("remove")
@click.argument("name")
@click.option("--with-devices", is_flag=True, help="Remove the devices on it too.")
@config_option
def bus_remove(name: str, with_devices: bool, config_path: str) -> None:
    """Remove bus NAME (and the comment right above it) from gateway.toml."""
    doc = open_doc(config_path)
    on_it = [str(d.get("id")) for d in doc.tables("devices") if d.get("bus") == name]
    if on_it and not with_devices:
        fail(t("bus_in_use", bus=name, devices=", ".join(on_it)), USAGE)
    try:
        remove_bus(doc, name)
        for dev_id in on_it:
            remove_device(doc, dev_id)
    except EditError as exc:
        fail(say(exc), NOT_FOUND)
    save(doc)
    gone = t("bus_removed_devices", devices=", ".join(on_it)) if on_it else ""
    click.echo(f"✓ {t('bus_removed', bus=name)}{gone}")
    click.echo(f"  {t('dev_reload_remove')}")


def where(table: dict[str, Any]) -> str:
    """What the bus is plugged into, as the installer wrote it."""
    if table.get("port"):
        return str(table["port"])
    if table.get("host"):
        return f"{table['host']}:{table.get('tcp_port', 502)}"
    return str(table.get("adapter", ""))


@bus.command("list")
@config_option
@json_option
def bus_list(config_path: str, as_json: bool) -> None:
    """Every configured bus, one a line, with how many devices it carries."""
    doc = open_doc(config_path)
    buses = doc.tables("buses")
    devices = doc.tables("devices")
    if as_json:
        print_json(buses)
        return
    if not buses:
        click.echo(t("bus_none", path=config_path))
    rows = []
    for b in buses:
        count = sum(1 for d in devices if d.get("bus") == b.get("name"))
        rows.append(
            [
                str(b.get("name", "?")),
                str(b.get("driver", "?")),
                where(b),
                t("bus_devices", count=count),
            ]
        )
    for line in columns(rows):
        click.echo(line)
