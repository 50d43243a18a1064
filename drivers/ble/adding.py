"""`gatewayd scan ble --add`: the Bluetooth bus and the locks just heard, into gateway.toml.

The bus is the one already configured on this adapter, else a new one (``ble``). A lock needs
its key file: ``--key-file`` when one lock is added, else asked for each lock at a terminal;
a lock without one is not added, and the line to add it later is said. Ids and keys are
checked as `gatewayd device add` checks them (the family's schema, the key file's mode).
"""

from __future__ import annotations

from typing import Any

import click

from drivers.ble.family import DoorFamily
from gatewayd.cli.common import USAGE, fail, interactive
from gatewayd.cli.i18n import say, t

BUS = "ble"


def _bus_of(buses: list[dict[str, Any]], adapter: str) -> str | None:
    for b in buses:
        if b.get("driver") == BUS and str(b.get("adapter", "hci0")) == adapter:
            return str(b["name"])
    return None


def add_locks(
    config_path: str,
    adapter: str,
    heard: list[str],
    only: str | None,
    key_file: str | None,
    dev_id: str | None,
    bus_name: str | None,
    settings: dict[str, str],
    quiet: bool,
) -> None:
    from gatewayd.cli.device import build_table, open_doc, save
    from gatewayd.cli.editing import EditError, add_bus, add_device, free_name

    def say_(text: str) -> None:
        if not quiet:
            click.echo(text)

    if only is not None:
        if only.upper() not in heard:
            fail(t("ble_not_heard", address=only.upper()), USAGE)
        heard = [only.upper()]
    if key_file is not None and len(heard) > 1:
        fail(t("ble_which", addresses=", ".join(heard)), USAGE)
    doc = open_doc(config_path)
    bus = _bus_of(doc.tables("buses"), adapter)
    if bus is None:
        taken = {str(b.get("name")) for b in doc.tables("buses")}
        bus = free_name(taken, bus_name or BUS)
        table: dict[str, Any] = {"name": bus, "driver": BUS}
        if adapter != "hci0":
            table["adapter"] = adapter
        add_bus(doc, table, "the entrance locks (Bluetooth)")
        say_(f"✓ {t('bus_added', bus=bus, driver=BUS, path=config_path)}")
    taken_ids = {str(d.get("id")) for d in doc.tables("devices")}
    added = []
    for address in heard:
        key = key_file
        if key is None and interactive() and not quiet:
            key = click.prompt(t("ble_key_of", address=address), default="", show_default=False)
        if not key:
            say_(f"· {t('ble_no_key', address=address, bus=bus, kind=DoorFamily.kind)}")
            continue
        new_id = dev_id or free_name(taken_ids, "door-main")
        try:
            device = build_table(
                doc, new_id, DoorFamily.kind, bus, {**settings, "address": address, "key_file": key}
            )
            add_device(doc, device)
        except EditError as exc:
            fail(say(exc), USAGE)
        taken_ids.add(new_id)
        added.append(new_id)
        say_(f"✓ {t('ble_added', device=new_id, address=address)}")
    save(doc)
    if added:
        say_(f"  {t('dev_reload_add')}")
