"""The part of `gatewayd check --all` that needs the world: the daemon, the broker, each bus
and device. When the daemon runs it holds the ports, so its view is asked for instead of
opening them; otherwise each bus is probed directly with a short timeout.

What a bus and its devices need checked is their driver's (``Driver.check_online``, whose code
lives in the driver's package and asks the devices' families): nothing here names a bus or a
family, and a bus whose driver knows no check says so.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gatewayd import plugins
from gatewayd.cli import client, probes
from gatewayd.cli.i18n import broker_said, t
from gatewayd.driver import Seen
from gatewayd.errors import GatewayError

if TYPE_CHECKING:
    from gatewayd.cli.check import Checklist
    from gatewayd.config import Config


def check_online(out: Checklist, cfg: Config, config_path: str) -> None:
    status = _daemon(out, config_path)
    _broker(out, cfg)
    seen = None
    if status is not None:
        states = {d["id"]: d["state"] for d in status["devices"]}
        seen = Seen(states, status.get("gateway_state", {}))
    for bus in cfg.buses:
        devices = list(cfg.devices_on(bus.name))
        try:
            lines = plugins.load_driver(bus.driver).check_online(bus, devices, seen)
            if lines is None:
                out.add(f"bus:{bus.name}", None, f"{bus.name}: driver {bus.driver}: no check known")
                continue
            for name, passed, text in lines:
                out.add(name, passed, text)
        except GatewayError as exc:  # one bus's trouble does not hide the others'
            out.add(f"bus:{bus.name}", False, f"{bus.name}: {exc}")


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
    """One line (one JSON entry, with its ``url``) per node of ``[mqtt] url``: a standby that
    does not take the login is found now, not on the day the primary fails."""
    for broker in cfg.mqtt.brokers:
        url = broker.url
        try:
            detail = probes.check_broker(cfg.mqtt, broker, f"{cfg.gateway_id}-check-{os.getpid()}")
        except probes.ProbeError as exc:
            out.add(
                "broker", False, t("broker_bad", url=url, detail=broker_said(str(exc))), url=url
            )
            continue
        out.add("broker", True, t("broker_ok", url=url, detail=broker_said(detail)), url=url)
