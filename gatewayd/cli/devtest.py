"""`gatewayd test DEVICE`: a safe, visible check of one device with a clear verdict.

Safe means read-only: a pile's summary is read and nothing is switched; a lock is asked for
its status, never unlocked; the smoke receiver is pinged. When the daemon runs it holds the
ports, so it is asked (its latest state, or a ``status`` action for a lock); otherwise the
device is reached directly. Exit 0 ✓, 1 ✗, 3 no such device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import click

from gatewayd.cli import client, probes
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
from gatewayd.model import Event


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
        fail(f"no device {device_id} in {config_path} (devices: {known})", NOT_FOUND)
    bus = cfg.bus(dev.bus)
    daemon = client.try_connect(config_path)
    try:
        if daemon is not None:
            with daemon:
                passed, details = _via_daemon(daemon, cfg.gateway_id, dev, bus)
        elif dev.kind == "charger":
            passed, details = _pile_direct(dev, bus)
        elif dev.kind == "smoke":
            passed, details = _smoke_direct(dev, bus)
        else:
            passed, details = _lock_direct(dev, bus, cfg)
    except probes.ProbeError as exc:
        passed, details = False, {"problem": str(exc)}
    if as_json:
        print_json({"device": device_id, "kind": dev.kind, "ok": passed, **details})
    else:
        for key, value in details.items():
            click.echo(f"  {key:<16} {value}")
        click.echo(
            ("✓ " if passed else "✗ ")
            + t("verdict_ok" if passed else "verdict_bad", device=device_id)
        )
    if not passed:
        raise click.exceptions.Exit(FAILED)


def _via_daemon(
    c: client.Client, gateway_id: str, dev: Any, bus: Any
) -> tuple[bool, dict[str, Any]]:
    if dev.kind == "door_lock":
        answer = c.request({"cmd": "call", "device": dev.id, "method": "status", "args": {}})
        return True, {"source": "daemon", **answer["result"]}
    st = c.request({"cmd": "status"})
    state: dict[str, Any] = next((d["state"] for d in st["devices"] if d["id"] == dev.id), {})
    details: dict[str, Any] = {"source": "daemon", **state}
    for key in ("last_seen", "ts"):
        if isinstance(state.get(key), int | float):
            details.pop(key)
            details["last seen"] = f"{time.time() - state[key]:.0f} s ago"
    if dev.kind == "charger":
        return bool(state.get("online")), details
    rx = st.get("gateway_state", {}).get(f"receiver.{bus.name}", {})
    details["receiver"] = "answers" if rx.get("online") else "does not answer"
    return bool(rx.get("online")), details


def _pile_direct(dev: Any, bus: Any) -> tuple[bool, dict[str, Any]]:
    s = bus.settings
    link = probes.modbus_link(
        s.get("port"), s["baudrate"], s.get("parity", "N"), s.get("host"), s["tcp_port"]
    )

    async def read() -> dict[str, Any]:
        try:
            return await probes.pile_summary(link, dev.settings["unit"])
        finally:
            link.close()

    summary = asyncio.run(read())
    details = {
        "unit": dev.settings["unit"],
        "firmware": summary["firmware"],
        "ports": summary["port_count"],
        "hottest": f"{summary['hottest_c']} °C (port {summary['hottest_port']})",
        "charging": ", ".join(map(str, summary["charging"])) or "none",
        "in fault": ", ".join(map(str, summary["faulted"])) or "none",
        "power": f"{summary['total_power_w']} W",
        "status": ", ".join(summary["status"]) or "normal",
    }
    return not summary["faulted"] and not summary["status"], details


def _smoke_direct(dev: Any, bus: Any) -> tuple[bool, dict[str, Any]]:
    port = bus.settings["port"]
    rx = probes.find_receiver(port, bus.settings.get("baudrate", 9600))
    if rx is None:
        return False, {"receiver": f"no answer on {port}"}
    return True, {
        "receiver": f"answers on {port}, firmware {rx.firmware}, {rx.paired} detectors paired",
        "detector": f"{dev.settings['address']} (room {dev.settings.get('room') or '-'})",
        "last seen": "shown by `gatewayd status` once the daemon runs; press its test button to hear it",
    }


class QuietContext:
    """The DriverContext of a driver run for one test: it keeps state, reports nothing."""

    def __init__(self, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.log = logging.getLogger("gatewayd.cli.test")
        self.states: dict[str, dict[str, Any]] = {}

    def emit(self, event: Event) -> None:
        pass

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.states.setdefault(device, {}).update(state)

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        pass


def _lock_direct(dev: Any, bus: Any, cfg: Any) -> tuple[bool, dict[str, Any]]:
    """The real BLE driver, run just long enough to ask the lock for its status."""
    try:
        from drivers.ble.driver import BleDriver
    except ImportError as exc:
        raise probes.DriverMissing(f"the BLE driver is not installed ({exc.name})") from None
    from gatewayd.errors import GatewayError
    from gatewayd.model import Action

    address = dev.settings["address"]
    patience = float(bus.settings.get("scan_seconds", 10.0)) + 5.0

    async def ask() -> dict[str, Any]:
        driver = BleDriver(bus, [dev], QuietContext(cfg.gateway_id))
        task = asyncio.create_task(driver.run(), name="ble-test")
        problem = "no answer"
        try:
            async with asyncio.timeout(patience):
                while not task.done():
                    try:
                        return dict(
                            await driver.execute(Action(dev.id, "status", {}, origin="cli:test"))
                        )
                    except GatewayError as exc:  # not seen or not connected yet: try again
                        problem = str(exc)
                        await asyncio.sleep(0.5)
        except TimeoutError:
            pass
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            from gatewayd.cli.scan import _close_bleak

            await _close_bleak()
        raise probes.ProbeError(f"{address}: {problem}; in range and powered? gatewayd scan ble")

    return True, {"source": "direct", **asyncio.run(ask())}
