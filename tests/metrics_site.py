"""A real Gateway (no buses running) filled with device state the way the drivers fill it,
for the metrics tests and the scrape benchmark.

Detector state comes from SRB-433 frames through the real profile; lock state and events from
DL-B2 records through the real profile; pile state has the shape the modbus driver publishes
and its events the shape it emits. Everything goes through ``Gateway.handle_event`` and
``Gateway.set_state``, so the rules raise the alarms they would raise on a live gateway.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.ble import profile as lock_profile
from drivers.ble import protocol as lock_proto
from drivers.srb433 import profile as smoke_profile
from drivers.srb433.codec import Frame
from gatewayd import config as config_mod
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.model import Event
from gatewayd.runtime import Gateway
from tests.harness import make_site

PORTS = 12


def catalogued(name: str, names: Mapping[str, object]) -> str:
    """The catalogue metric a sample or series name belongs to: itself, or the histogram
    whose ``_bucket``, ``_sum`` or ``_count`` it is."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in names:
            return name.removesuffix(suffix)
    return name


def site_body(chargers: int, detectors: int, listen: str = "") -> str:
    parts = [f'[metrics]\nlisten = "{listen}"\n'] if listen else []
    if chargers:
        parts.append('[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\n')
    if detectors:
        parts.append('[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "/dev/null"\n')
    parts += [
        f'[[devices]]\nid = "pile-{i}"\nkind = "charger"\nbus = "rs485"\nunit = {i}\n'
        for i in range(1, chargers + 1)
    ]
    parts += [
        f'[[devices]]\nid = "smoke-{i}"\nkind = "smoke"\nbus = "smoke-rx"\n'
        f'address = "{0x1A2B0000 + i:08X}"\nroom = "{100 + i}"\n'
        for i in range(1, detectors + 1)
    ]
    return "\n".join(parts)


def make_gateway(
    tmp: Path, chargers: int = 0, detectors: int = 0, locks: int = 0, listen: str = ""
) -> Gateway:
    site = make_site(tmp, "mqtt://127.0.0.1:1", site_body(chargers, detectors, listen))
    cfg = config_mod.load(str(site.config))
    gw = Gateway(cfg, tick_seconds=3600)
    if locks:
        # Lock devices are added after construction: the ble driver's entry point is not
        # registered yet, and the collector only reads the config.
        doors = tuple(
            DeviceConfig(f"door-{i}", "door_lock", "ble", {"escape_route": i == 1})
            for i in range(1, locks + 1)
        )
        gw.config = dataclasses.replace(
            cfg, buses=(*cfg.buses, BusConfig("ble", "ble", {})), devices=(*cfg.devices, *doors)
        )
    return gw


def close_gateway(gw: Gateway) -> None:
    gw.replay.close()
    getattr(gw.outbox, "close", lambda: None)()
    gw.keeper.close()


# -- what the drivers would do --------------------------------------------------------------


def smoke_frame(gw: Gateway, device: str, type_: int, payload: bytes = b"", seq: int = 1) -> None:
    """One detector frame through the SRB-433 profile, as the serial driver handles it."""
    address = int(gw.config.device(device).settings["address"], 16)  # type: ignore[union-attr]
    event = smoke_profile.frame_to_event(Frame(type_, address, seq, payload), device, time.time())
    gw.set_state(device, smoke_profile.state_update(event))
    gw.handle_event(event)


def heartbeat(gw: Gateway, device: str, battery_mv: int = 3000, rssi_dbm: int = -60) -> None:
    smoke_frame(
        gw, device, 0x07, battery_mv.to_bytes(2, "big") + rssi_dbm.to_bytes(1, "big", signed=True)
    )


def lock_record(gw: Gateway, device: str, record: lock_proto.Notification) -> None:
    """One DL-B2 notification through the lock profile, as the ble link handles it."""
    if isinstance(record, lock_proto.Status):
        gw.set_state(device, {**lock_profile.status_state(record), "connected": True})
        return
    spec = lock_profile.EVENTS[type(record)]
    gw.handle_event(
        Event(device, spec.type, spec.severity, {**spec.data(record), "counter": record.seq})
    )
    if state := spec.state(record):
        gw.set_state(device, state)


def port_reading(
    port: int, state: str = "idle", power_w: int = 0, temp: float = 24.5
) -> dict[str, Any]:
    return {
        "port": port,
        "state": state,
        "relay": state in ("charging", "full"),
        "voltage_v": 229.8,
        "current_a": round(power_w / 229.8, 2),
        "power_w": power_w,
        "energy_wh": 310 if state != "idle" else 0,
        "temperature_c": temp,
        "sensor_fault": False,
        "fault": "none",
    }


def pile_state(
    gw: Gateway, device: str, readings: list[dict[str, Any]], cabinet_c: float = 31.0
) -> None:
    """A pile's state and its ``charger.sample``, shaped as the modbus driver publishes them."""
    keys = ("port", "state", "relay", "power_w", "temperature_c", "fault")
    gw.set_state(
        device,
        {
            "online": True,
            "unit": int(device.rsplit("-", 1)[1]),
            "profile": "ebc",
            "port_count": len(readings),
            "ports": [{k: r[k] for k in keys} for r in readings],
            "status_bits": 0,
            "status": [],
            "firmware": "2.7",
            "cabinet_c": cabinet_c,
            "mains_v": 229.8,
            "total_power_w": sum(r["power_w"] for r in readings),
        },
    )
    gw.handle_event(
        Event(
            device,
            "charger.sample",
            data={
                "source": "ports",
                "unit": 1,
                "ports_n": len(readings),
                "ports": readings,
                "cabinet_c": cabinet_c,
                "status_bits": 0,
                "status": [],
            },
        )
    )


def port_cut(gw: Gateway, device: str, port: int, origin: str) -> None:
    gw.handle_event(
        Event(
            device,
            "charger.port_cut",
            "warning",
            {
                "reason": f"{origin}: port {port} at 72.0 °C ≥ 60 °C",
                "origin": origin,
                "done": "relay_opened",
                "attempts": 1,
                "port": port,
            },
        )
    )


def fill(gw: Gateway) -> None:
    """A busy evening: some ports charging, one detector in alarm, locks in use."""
    for d in gw.config.devices:
        if d.kind == "smoke":
            heartbeat(gw, d.id, 2900 + len(d.id), -55 - len(d.id))
        elif d.kind == "charger":
            readings = [
                port_reading(p, "charging", 180 + 7 * p, 30.5 + p / 4)
                if p % 3 == 0
                else port_reading(p)
                for p in range(1, PORTS + 1)
            ]
            pile_state(gw, d.id, readings)
        elif d.kind == "door_lock":
            lock_record(gw, d.id, lock_proto.Status(seq=1, lock=0, door=0, battery_mv=5900))
            for seq, method in enumerate((2, 2, 3, 1), start=2):
                lock_record(gw, d.id, lock_proto.Unlocked(seq=seq, method=method, user=300 + seq))
            lock_record(gw, d.id, lock_proto.AccessDenied(seq=9, method=3, user=0))
