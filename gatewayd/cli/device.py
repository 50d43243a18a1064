"""`gatewayd device add|remove|list|show`: the [[devices]] of gateway.toml, edited in place.

Comments and layout are kept (gatewayd.cli.editing); every change is validated against the
driver's schema before the file is replaced atomically; a taken id, or an address already
used on the same bus, is refused. A running daemon picks changes up on reload.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from typing import Any

import click

from gatewayd.cli.common import (
    NOT_FOUND,
    USAGE,
    Fail,
    config_option,
    fail,
    json_option,
    print_json,
)
from gatewayd.cli.editing import ConfigText, EditError, add_device, remove_device
from gatewayd.cli.i18n import expected, say, t
from gatewayd.cli.show import columns, pairs_lines


@click.group()
def device() -> None:
    """Add, remove, list and show the devices in gateway.toml.

    \b
    Examples:
      gatewayd device add pile-1 --kind charger --bus rs485 --unit 1
      gatewayd device add smoke-301 --kind smoke --bus smoke-rx --address 1A2B3C4D --room 301
      gatewayd device add door-main --kind door_lock --bus ble --address C0:FF:EE:00:00:01 \\
          --key-file /etc/gatewayd/door-main.key escape_route=true
      gatewayd device list
      gatewayd device remove smoke-301
    """


def open_doc(path: str) -> ConfigText:
    try:
        return ConfigText(path)
    except EditError as exc:
        fail(say(exc), USAGE)


def _kinds() -> list[str]:
    from gatewayd import plugins

    return list(plugins.families())


def _driver_of(doc: ConfigText, bus: str) -> str:
    for table in doc.tables("buses"):
        if table.get("name") == bus:
            return str(table.get("driver", ""))
    names = ", ".join(str(b.get("name")) for b in doc.tables("buses")) or "none configured"
    raise Fail(t("dev_no_bus", bus=bus, path=doc.path, names=names), USAGE)


def _schema_for(doc: ConfigText, bus: str, kind: str | None) -> tuple[str, dict[str, Any]]:
    from gatewayd import plugins
    from gatewayd.errors import PluginError

    driver_name = _driver_of(doc, bus)
    try:
        driver = plugins.load_driver(driver_name)
    except PluginError as exc:
        fail(say(exc), USAGE)
    served = plugins.kinds_on(driver.name)
    kinds = sorted(served)
    if kind is None:
        if len(kinds) != 1:
            fail(t("dev_give_kind", bus=bus, driver=driver_name, kinds=", ".join(kinds)), USAGE)
        kind = kinds[0]
    if kind not in served:
        fail(
            t(
                "dev_wrong_kind",
                bus=bus,
                driver=driver_name,
                kind=kind,
                kinds=", ".join(kinds) or "-",
            ),
            USAGE,
        )
    return kind, dict(served[kind])


def typed_value(key: str, text: str, schema: dict[str, Any]) -> Any:
    """``text`` as the schema wants it: a TOML literal (1, true, 60.5) when the key's field
    accepts that, else the plain string (so 12345678 stays a detector id, not a number)."""
    candidates: list[Any] = []
    with contextlib.suppress(tomllib.TOMLDecodeError):
        candidates.append(tomllib.loads(f"v = {text}")["v"])
    candidates.append(text)
    field = schema.get(key)
    if field is None:
        known = ", ".join(sorted(schema)) or "none"
        fail(t("dev_unknown_key", key=key, known=known), USAGE)
    if field.path and text and not os.path.isabs(text):
        # Typed in a shell: relative to here. Written whole, as the config's own relative
        # paths are taken from the config's folder.
        candidates = [os.path.abspath(text)]
    for value in candidates:
        try:
            field.convert(value)
        except (ValueError, TypeError):
            continue
        except Exception:  # noqa: BLE001 - e.g. a secret file's problem: validate() says it in full
            return value
        return value
    raise Fail(f"{key}={text}: {t('expected', expected=expected(field.expected))}", USAGE)


def key_values(items: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; Fail (exit 2) naming the first that is not one."""
    fields: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(t("dev_key_value", item=item), USAGE)
        fields[key.strip()] = value.strip()
    return fields


def build_table(
    doc: ConfigText, dev_id: str, kind: str | None, bus: str, fields: dict[str, str]
) -> dict[str, Any]:
    kind, schema = _schema_for(doc, bus, kind)
    table: dict[str, Any] = {"id": dev_id, "kind": kind, "bus": bus}
    for key, text in fields.items():
        table[key] = typed_value(key, text, schema)
    return table


def save(doc: ConfigText) -> None:
    try:
        doc.validate()
    except EditError as exc:
        fail(t("dev_not_changed", reason=say(exc)), USAGE)
    doc.write()


def _only_bus(doc: ConfigText, kind: str | None) -> str:
    """The bus to use when none was named: the only one, or the only one serving ``kind``."""
    from gatewayd import plugins

    buses = [str(b.get("name")) for b in doc.tables("buses")]
    if kind is not None:
        buses = [
            str(b.get("name"))
            for b in doc.tables("buses")
            if kind in plugins.kinds_on(str(b.get("driver")))
        ]
    if len(buses) != 1:
        fail(t("dev_give_bus"), USAGE)
    return buses[0]


@device.command("add")
@click.argument("dev_id", metavar="ID")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option(
    "--kind",
    type=click.Choice(sorted(_kinds())),
    help="Default: what the bus serves.",
)
@click.option("--bus", help="The [[buses]] name (default: the only bus that fits).")
@click.option("--unit", help="Modbus address of a pile (1..247).")
@click.option("--address", help="Detector id (8 hex digits) or lock address (C0:FF:EE:..).")
@click.option("--room", help="Where a detector hangs.")
@click.option("--key-file", help="A lock's key file (32 hex digits, mode 0600).")
@config_option
@json_option
def device_add(
    dev_id: str,
    settings: tuple[str, ...],
    kind: str | None,
    bus: str | None,
    unit: str | None,
    address: str | None,
    room: str | None,
    key_file: str | None,
    config_path: str,
    as_json: bool,
) -> None:
    """Add device ID; other keys of the driver's schema as KEY=VALUE."""
    doc = open_doc(config_path)
    fields = {
        k: v
        for k, v in (("unit", unit), ("address", address), ("room", room), ("key_file", key_file))
        if v is not None
    }
    fields.update(key_values(settings))
    bus = bus or _only_bus(doc, kind)
    table = build_table(doc, dev_id, kind, bus, fields)
    try:
        add_device(doc, table)
    except EditError as exc:
        fail(say(exc), USAGE)
    save(doc)
    if as_json:
        print_json(table)
    else:
        click.echo(
            f"✓ {t('dev_added', device=dev_id, kind=table['kind'], bus=bus, path=config_path)}"
        )
        click.echo(f"  {t('dev_reload_add')}")


@device.command("remove")
@click.argument("dev_id", metavar="ID")
@config_option
def device_remove(dev_id: str, config_path: str) -> None:
    """Remove device ID (and the comment right above it) from gateway.toml."""
    doc = open_doc(config_path)
    try:
        removed = remove_device(doc, dev_id)
    except EditError as exc:
        fail(say(exc), NOT_FOUND)
    save(doc)
    click.echo(
        f"✓ {t('dev_removed', device=dev_id, kind=removed.get('kind'), bus=removed.get('bus'))}"
    )
    click.echo(f"  {t('dev_reload_remove')}")


@device.command("list")
@config_option
@json_option
def device_list(config_path: str, as_json: bool) -> None:
    """Every configured device, one a line."""
    doc = open_doc(config_path)
    devices = doc.tables("devices")
    if as_json:
        print_json([_public(d) for d in devices])
        return
    if not devices:
        click.echo(t("dev_none", path=config_path))
    rows = []
    for d in devices:
        where = d.get("unit", d.get("address", ""))
        room = t("dev_room", room=d["room"]) if d.get("room") else ""
        rows.append([str(d.get(k, "?")) for k in ("id", "kind", "bus")] + [str(where), room])
    for line in columns(rows):  # as wide as the longest id, kind and bus name
        click.echo(line)


@device.command("show")
@click.argument("dev_id", metavar="ID")
@config_option
@json_option
def device_show(dev_id: str, config_path: str, as_json: bool) -> None:
    """Every key of device ID, with the driver's defaults filled in."""
    doc = open_doc(config_path)
    table = next((d for d in doc.tables("devices") if d.get("id") == dev_id), None)
    if table is None:
        fail(t("dev_no_such", device=dev_id, path=config_path), NOT_FOUND)
    full = dict(table)
    try:
        cfg = doc.validate()
        dev = cfg.device(dev_id)
        full = {"id": dev.id, "kind": dev.kind, "bus": dev.bus, **dict(dev.settings)}
    except EditError:
        pass  # show what is written even when the file does not validate
    full = _public(full)
    if as_json:
        print_json(full)
        return
    for line in pairs_lines(full.items(), indent=""):
        click.echo(line)


def _public(table: dict[str, Any]) -> dict[str, Any]:
    """Secrets show as their file path, never their content."""
    from gatewayd.secrets import Secret

    return {k: (v.path if isinstance(v, Secret) else v) for k, v in table.items()}
