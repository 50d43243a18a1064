"""`gatewayd test DEVICE`: a safe, visible check of one device with a clear verdict.

Safe means read-only: a pile's summary is read and nothing is switched; a lock is asked for
its status, never unlocked; the smoke receiver is pinged. When the daemon runs it holds the
ports, so it is asked (its latest state, or a ``status`` action for a lock); otherwise the
device is reached directly. Exit 0 ✓, 1 ✗, 3 no such device.
"""

from __future__ import annotations

from typing import Any

import click

from gatewayd import plugins
from gatewayd.cli import client
from gatewayd.cli.common import (
    FAILED,
    NOT_FOUND,
    config_option,
    fail,
    json_option,
    load_config,
    print_json,
)
from gatewayd.cli.i18n import t
from gatewayd.cli.show import pairs_lines
from gatewayd.errors import ProbeError
from gatewayd.family import Family


@click.command()
@click.argument("device_id", metavar="DEVICE")
@config_option
@json_option
def test(device_id: str, config_path: str, as_json: bool) -> None:
    """Check DEVICE without changing anything: ✓ or ✗, and what was seen.

    \b
    Examples:
      gatewayd test pile-1          # reads the pile's summary (temperatures, charging ports)
      gatewayd test door-main       # asks the lock for its status
      gatewayd test smoke-301       # pings the receiver, shows when the detector last spoke
    """
    cfg = load_config(config_path)
    dev = cfg.device(device_id)
    if dev is None:
        known = ", ".join(d.id for d in cfg.devices) or "none"
        fail(t("test_no_device", device=device_id, path=config_path, known=known), NOT_FOUND)
    bus = cfg.bus(dev.bus)
    family = plugins.family(dev.kind)
    daemon = client.try_connect(config_path)
    try:
        if daemon is not None:
            with daemon:
                passed, details = _via_daemon(daemon, family, dev, bus)
        else:
            passed, details = family.self_test(dev, bus, cfg.gateway_id)
    except ProbeError as exc:
        passed, details = False, {"problem": str(exc)}
    if as_json:
        print_json({"device": device_id, "kind": dev.kind, "ok": passed, **details})
    else:
        for line in pairs_lines(details.items()):
            click.echo(line)
        click.echo(
            ("✓ " if passed else "✗ ")
            + t("verdict_ok" if passed else "verdict_bad", device=device_id)
        )
    if not passed:
        raise click.exceptions.Exit(FAILED)


def _via_daemon(
    c: client.Client, family: Family, dev: Any, bus: Any
) -> tuple[bool, dict[str, Any]]:
    """The running daemon holds the device's port: ask it. A family that answers a local
    ``status`` is asked directly; otherwise the state the daemon keeps is judged."""
    status = family.actions.get("status")
    if status is not None and status.local:
        answer = c.request({"cmd": "call", "device": dev.id, "method": "status", "args": {}})
        return True, {"source": "daemon", **answer["result"]}
    st = c.request({"cmd": "status"})
    state: dict[str, Any] = next((d["state"] for d in st["devices"] if d["id"] == dev.id), {})
    passed, shown = family.verdict(state, st.get("gateway_state") or {}, bus.name)
    return passed, {"source": "daemon", **state, **shown}
