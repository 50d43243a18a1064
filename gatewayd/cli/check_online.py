"""The part of `gatewayd check --all` that needs the world: the daemon, the broker, each bus
and device. When the daemon runs it holds the ports, so its view is asked for instead of
opening them; otherwise each bus is probed directly with a short timeout."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from gatewayd.cli import client, probes
from gatewayd.cli.i18n import t

if TYPE_CHECKING:
    from gatewayd.cli.check import Checklist
    from gatewayd.config import Config
    from gatewayd.driver import BusConfig


def check_online(out: Checklist, cfg: Config, config_path: str) -> None:
    status = _daemon(out, config_path)
    _broker(out, cfg)
    states: dict[str, Any] = {}
    if status is not None:
        states = {d["id"]: d["state"] for d in status["devices"]}
        states[cfg.gateway_id] = status.get("gateway_state", {})
    for bus in cfg.buses:
        devices = list(cfg.devices_on(bus.name))
        if bus.driver == "serial":
            _serial(out, bus, devices, states.get(cfg.gateway_id) if status else None)
        elif bus.driver == "modbus":
            _modbus(out, bus, devices, states if status else None)
        elif bus.driver == "ble":
            _ble(out, bus, devices, states if status else None)
        else:
            out.add(f"bus:{bus.name}", None, f"{bus.name}: driver {bus.driver}: no check known")


def _daemon(out: Checklist, config_path: str) -> dict[str, Any] | None:
    c = client.try_connect(config_path, timeout=5)
    if c is None:
        out.add("daemon", None, t("daemon_stopped"))
        return None
    with c:
        st = c.request({"cmd": "status"})
    broker = t("connected") if st["broker_connected"] else t("offline")
    out.add(
        "daemon",
        True,
        t("daemon_running", pid=st["pid"], uptime=f"{st['uptime']:.0f} s", broker=broker),
    )
    return st


def _broker(out: Checklist, cfg: Config) -> None:
    url = f"{'mqtts' if cfg.mqtt.tls else 'mqtt'}://{cfg.mqtt.host}:{cfg.mqtt.port}"
    try:
        detail = probes.check_broker(cfg.mqtt, f"{cfg.gateway_id}-check-{os.getpid()}")
    except probes.ProbeError as exc:
        out.add("broker", False, t("broker_bad", url=url, detail=exc))
        return
    out.add("broker", True, t("broker_ok", url=url, detail=detail))


def _serial(
    out: Checklist, bus: BusConfig, devices: list[Any], gw_state: dict[str, Any] | None
) -> None:
    port = bus.settings["port"]
    if not os.path.exists(port):
        out.add(f"bus:{bus.name}", False, t("port_missing", bus=bus.name, port=port))
        return
    if gw_state is not None:
        rx = gw_state.get(f"receiver.{bus.name}", {})
        if rx.get("online"):
            out.add(
                f"bus:{bus.name}",
                True,
                f"{bus.name}: receiver on {port} answers the daemon ({rx.get('paired', '?')} detectors paired)",
            )
        else:
            out.add(
                f"bus:{bus.name}",
                False,
                f"{bus.name}: the receiver on {port} does not answer the daemon; replug it, check: gatewayd scan serial",
            )
        return
    try:
        rx_found = probes.receiver_probe().find_receiver(port, bus.settings.get("baudrate", 9600))
    except probes.ProbeError as exc:
        out.add(f"bus:{bus.name}", False, f"{bus.name}: {exc}")
        return
    if rx_found is None:
        out.add(
            f"bus:{bus.name}",
            False,
            f"{bus.name}: no SRB-433 answer on {port}; is it the receiver? find it: gatewayd scan serial",
        )
    else:
        out.add(
            f"bus:{bus.name}",
            True,
            f"{bus.name}: receiver on {port} answers (firmware {rx_found.firmware}, {rx_found.paired} detectors paired)",
        )
    for dev in devices:
        out.add(
            f"device:{dev.id}",
            None,
            f"{dev.id}: detector {dev.settings['address']}: seen once the daemon runs (gatewayd status)",
        )


def _modbus(
    out: Checklist, bus: BusConfig, devices: list[Any], states: dict[str, Any] | None
) -> None:
    s = bus.settings
    if s.get("port"):
        if not os.path.exists(s["port"]):
            out.add(f"bus:{bus.name}", False, t("port_missing", bus=bus.name, port=s["port"]))
            return
        out.add(f"bus:{bus.name}", True, t("port_ok", bus=bus.name, port=s["port"]))
    else:
        try:
            probes.tcp_reachable(s["host"], s["tcp_port"])
        except probes.ProbeError as exc:
            out.add(
                f"bus:{bus.name}",
                False,
                t("host_bad", bus=bus.name, host=s["host"], port=s["tcp_port"], reason=exc),
            )
            return
        out.add(
            f"bus:{bus.name}", True, t("host_ok", bus=bus.name, host=s["host"], port=s["tcp_port"])
        )
    if states is not None:
        for dev in devices:
            online = states.get(dev.id, {}).get("online")
            out.add(
                f"device:{dev.id}",
                bool(online),
                f"{dev.id} (unit {dev.settings['unit']}): "
                + (
                    "online"
                    if online
                    else "offline in the daemon; check wiring A/B, address and baud"
                ),
            )
        return
    try:
        link = probes.modbus_probe().modbus_link(
            s.get("port"), s["baudrate"], s.get("parity", "N"), s.get("host"), s["tcp_port"]
        )
    except probes.DriverMissing as exc:
        out.add(f"bus:{bus.name}", None, f"{bus.name}: {exc}")
        return

    async def probe_all() -> list[dict[str, Any] | None]:
        try:
            return [
                await probes.modbus_probe().identify_pile(link, d.settings["unit"], 0.5)
                for d in devices
            ]
        finally:
            link.close()

    for dev, found in zip(devices, asyncio.run(probe_all()), strict=True):
        unit = dev.settings["unit"]
        if found:
            out.add(
                f"device:{dev.id}",
                True,
                f"{dev.id} (unit {unit}): {found['label']} pile, firmware {found['firmware']}, {found['ports']} ports",
            )
        else:
            out.add(
                f"device:{dev.id}",
                False,
                f"{dev.id} (unit {unit}): no answer; check wiring A/B, the pile's address and baud rate",
            )


def _ble(out: Checklist, bus: BusConfig, devices: list[Any], states: dict[str, Any] | None) -> None:
    adapter = bus.settings.get("adapter", "hci0")
    if not probes.adapter_present(adapter):
        out.add(f"bus:{bus.name}", False, t("adapter_bad", bus=bus.name, adapter=adapter))
        return
    out.add(f"bus:{bus.name}", True, t("adapter_ok", bus=bus.name, adapter=adapter))
    for dev in devices:
        if states is None:
            out.add(f"device:{dev.id}", None, f"{dev.id}: check it with: gatewayd test {dev.id}")
            continue
        connected = states.get(dev.id, {}).get("connected")
        out.add(
            f"device:{dev.id}",
            bool(connected),
            f"{dev.id}: "
            + (
                "connected"
                if connected
                else "not connected; is it in range and powered? gatewayd scan ble"
            ),
        )
