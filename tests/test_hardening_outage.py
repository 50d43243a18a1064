"""Hardening: the broker unreachable for hours, in simulated time (tests/simclock.py).

The real daemon, with its real outbox, uplink and rules, runs four hours of a house's life
with the broker out of reach. A detector sends a heartbeat every minute, a low-battery
warning every half hour and a tamper alarm every hour, and telemetry every 10 s. The test
then opens the way to the broker and checks:

- the gateway kept trying the whole time, at the capped, jittered pace the config sets
  (never faster, never giving up);
- every event arrives, urgent and info, each in its order; telemetry older than its TTL was
  dropped and counted instead of piling up in memory;
- the outbox, not memory, held the backlog (its depth matched what was emitted).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.soak_peers import proc_figures
from tests.hardening_support import control, control_env
from tests.harness import REPO, Broker, Daemon, Gate, Probe, install_plugin, make_site
from tests.harness import wait_until as wait
from tests.simclock import sitecustomize_for

HOURS = 4.0
RECONNECT_MAX = 60.0  # the default

PLUGIN = '''
import asyncio
from gatewayd.driver import Driver
from gatewayd.model import Event
from gatewayd.schema import Float, Str


class Clockwork(Driver):
    """A detector's life by the clock: telemetry every 10 s, a heartbeat every minute, a
    low-battery warning every 30 minutes, a tamper alarm every hour. Appends "<seconds>
    <severity> <event id>" to `log` for each event."""
    name = "clockwork"
    bus_schema = {"log": Str(), "hours": Float(0, 1000)}
    device_schemas = {"smoke": {"room": Str(default="")}}

    async def run(self):
        dev = next(iter(self.devices))
        t = 0
        with open(self.bus.settings["log"], "a") as log:
            while t < self.bus.settings["hours"] * 3600:
                await asyncio.sleep(10)
                t += 10
                self.ctx.publish_telemetry(dev, {"t": t})
                for every, sev, typ in ((60, "info", "smoke.heartbeat"),
                                        (1800, "warning", "smoke.low_battery"),
                                        (3600, "critical", "smoke.tamper")):
                    if t % every == 0:
                        ev = Event(dev, typ, sev, {"t": t})
                        self.ctx.emit(ev)
                        log.write(f"{t} {sev} {ev.id}\\n")
                log.flush()
        await asyncio.Event().wait()
'''


def test_broker_unreachable_for_hours_nothing_lost_retries_paced_memory_bounded(
    tmp_path: Path, broker: Broker
) -> None:
    gate = Gate(broker.port)
    log = tmp_path / "emitted"
    body = (
        f'[[buses]]\nname = "house"\ndriver = "clockwork"\nlog = "{log}"\nhours = {HOURS}\n\n'
        '[[devices]]\nid = "smoke-1"\nkind = "smoke"\nbus = "house"\n'
    )
    site = make_site(tmp_path, f"mqtt://127.0.0.1:{gate.port}", body)
    # A long keepalive: simulated time races while a PINGRESP is on its (real) way, and a
    # ping missed that way would only add reconnections to the picture.
    cfg = site.config.read_text().replace(
        "reconnect_max_seconds = 1.0",
        f"reconnect_max_seconds = {RECONNECT_MAX}\nkeepalive = 3600",
    )
    site.config.write_text(cfg)
    plugins = tmp_path / "plugins"
    env = install_plugin(plugins, "clockwork_plugin", PLUGIN, {"clockwork": "Clockwork"})
    sitecustomize_for(plugins, REPO)
    daemon = Daemon(site, tick=1.0, env={**env, **control_env(site)})
    probe = Probe(broker.port)
    sock = site.dir / "control.sock"
    daemon.start(wait_ready=False)
    try:
        wait(sock.exists, 20, "the control socket")

        def status() -> dict[str, Any]:
            """The daemon's status; while it drains a long outage on a loaded machine, the
            socket may turn a 10 ms poll away as busy (or close before the request was
            sent): that is an empty answer to poll again, not a failure."""
            try:
                answer = control(sock, {"cmd": "status"})
            except (ConnectionError, TimeoutError):
                return {}
            return answer if "uptime" in answer else {}

        wait(lambda: status().get("uptime", 0) >= 3600, 120, "the first hour")
        assert daemon.proc is not None
        rss_1h = proc_figures(daemon.proc.pid)["rss_kb"]
        expected = int(HOURS * (60 + 2 + 1))
        wait(lambda: log.exists() and len(log.read_text().splitlines()) >= expected, 240, "4 h")
        outage = wait(status, 10, "the status during the outage")
        rss_4h = proc_figures(daemon.proc.pid)["rss_kb"]
        emitted = [line.split() for line in log.read_text().splitlines()]
        attempts = daemon.output().count("unreachable")
        gate.open()
        wait(lambda: status().get("broker_connected"), 30, "the gateway back on the broker")
        ids = [i for _, _, i in emitted]

        def got() -> list[str]:
            return [m.json()["id"] for m in probe.on(f"{site.root}/events/+")]

        wait(lambda: set(ids) <= set(got()), 60, "every event of the outage")
        telemetry = [m.json() for m in probe.on(f"{site.root}/telemetry/smoke-1")]
    finally:
        gate.close()
        probe.close()
        daemon.stop()
    # Four hours' worth, every one held while the broker was away.
    assert len(emitted) == expected
    assert outage["broker_connected"] is False
    assert outage["outbox"]["depth"] >= len(emitted)
    # Retried all along at the capped pace: a jittered delay in [cap/2, cap] once the backoff
    # has grown (after a few quick first tries), never faster, never given up.
    delays = [
        float(d) for d in re.findall(r"unreachable .*; retrying in ([\d.]+) s", daemon.output())
    ]
    assert max(delays) <= RECONNECT_MAX
    assert HOURS * 3600 / RECONNECT_MAX <= attempts <= HOURS * 3600 / (RECONNECT_MAX / 2) + 10
    # In order within each class of service: critical, urgent (warning) and info.
    order: dict[str, int] = {}
    for n, i in enumerate(got()):  # first arrival: a resend after a drop may come again later
        order.setdefault(i, n)
    for lane in (("critical",), ("warning",), ("info",)):
        sent = [i for _, sev, i in emitted if sev in lane]
        assert [order[i] for i in sent] == sorted(order[i] for i in sent), lane
    # Telemetry is best effort: only the last TTL's worth (10 min, 60 readings) survived;
    # the rest was dropped and counted, not kept.
    stats = outage["outbox"]
    kept = [t for t in telemetry if t["values"]["t"] <= HOURS * 3600]
    assert len(kept) <= 60 + 2
    assert stats["telemetry_buffered"] <= 62
    assert stats["dropped_telemetry"] >= HOURS * 360 - 62
    # Three more hours of outage cost no memory worth the name (the backlog is on disk).
    assert rss_4h - rss_1h < 2048, (rss_1h, rss_4h)
    print(
        f"\noutage {HOURS} h: {len(emitted)} events, {attempts} connection attempts "
        f"(delays {min(delays):.1f}-{max(delays):.1f} s), RSS {rss_1h} -> {rss_4h} kB, "
        f"telemetry delivered {len(kept)} of {HOURS * 360:.0f}"
    )
