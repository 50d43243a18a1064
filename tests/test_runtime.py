"""Supervision and reload: one failing bus never stops the others; SIGHUP keeps the broker."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.harness import Broker, Daemon, Probe, install_plugin, make_site, wait_until

FLAKY = '''
import asyncio, os
from gatewayd.driver import Driver
from gatewayd.model import Event
from gatewayd.schema import Float, Str

class Flaky(Driver):
    """Emits a heartbeat event every `period`; crashes at start when its `crash_flag` exists."""
    name = "flaky"
    bus_schema = {"period": Float(0.01, 10, default=0.1), "crash_flag": Str(default=""), "label": Str(default="")}

    async def run(self) -> None:
        flag = self.bus.settings["crash_flag"]
        if flag and os.path.exists(flag):
            raise RuntimeError("simulated driver crash")
        n = 0
        while True:
            n += 1
            self.ctx.emit(Event(self.ctx.gateway_id, "gateway.test_beat",
                                data={"bus": self.bus.name, "n": n, "label": self.bus.settings["label"]}))
            await asyncio.sleep(self.bus.settings["period"])
'''


def beats(probe: Probe, root: str, bus: str) -> list[dict]:
    return [
        m.json()
        for m in probe.on(f"{root}/events/+")
        if m.json()["type"] == "gateway.test_beat" and m.json()["data"]["bus"] == bus
    ]


def test_crashing_driver_restarted_with_backoff_others_keep_running(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    flag = tmp_path / "crash"
    flag.touch()
    body = (
        f'[[buses]]\nname = "bad"\ndriver = "flaky"\ncrash_flag = "{flag}"\n\n'
        '[[buses]]\nname = "good"\ndriver = "flaky"\n'
    )
    site = make_site(tmp_path, broker.url, body)
    env = install_plugin(tmp_path / "plugins", "flaky_plugin", FLAKY, {"flaky": "Flaky"})
    daemon = Daemon(site, env=env)
    daemon.start()
    try:
        failures = lambda: [
            m.json()
            for m in probe.on(f"{site.root}/events/{site.gateway_id}")
            if m.json()["type"] == "gateway.driver_failed"
        ]
        wait_until(lambda: len(failures()) >= 2, 10, "two restarts of the bad bus")
        first, second = failures()[:2]
        assert first["data"]["bus"] == "bad" and "simulated driver crash" in first["data"]["reason"]
        assert (first["data"]["restarts"], second["data"]["restarts"]) == (1, 2)
        assert first["severity"] == "warning"
        n_good = len(beats(probe, site.root, "good"))
        assert n_good >= 5  # the good bus kept running throughout
        flag.unlink()  # the fault is gone: the next restart sticks
        wait_until(lambda: beats(probe, site.root, "bad"), 10, "the bad bus to recover")
        assert daemon.alive
        restarts = [f["data"]["restarts"] for f in failures()]
        assert restarts == sorted(restarts)
    finally:
        daemon.stop()


def test_sighup_reloads_buses_and_keeps_broker_connection(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    site = make_site(
        tmp_path,
        broker.url,
        '[[buses]]\nname = "b1"\ndriver = "flaky"\nlabel = "before"\n\n'
        '[[buses]]\nname = "b2"\ndriver = "flaky"\nlabel = "steady"\n',
    )
    env = install_plugin(tmp_path / "plugins", "flaky_plugin", FLAKY, {"flaky": "Flaky"})
    daemon = Daemon(site, env=env)
    daemon.start()
    try:
        wait_until(lambda: beats(probe, site.root, "b1"), 5, "beats from b1")
        site.config.write_text(
            site.config.read_text().replace('label = "before"', 'label = "after"')
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any(b["data"]["label"] == "after" for b in beats(probe, site.root, "b1")),
            5,
            "reloaded bus",
        )
        # b1 changed and started afresh (its count restarted); b2 did not and ran on.
        b1 = [b["data"]["n"] for b in beats(probe, site.root, "b1")]
        assert b1.count(1) == 2  # a second first beat: a new driver instance
        b2 = [b["data"]["n"] for b in beats(probe, site.root, "b2")]
        assert b2 == list(range(1, len(b2) + 1))  # one driver the whole time
        assert "2 buses (1 restarted)" in daemon.output()
        # A broken config is refused and the running one kept.
        site.config.write_text(site.config.read_text().replace('label = "after"', "label = 3"))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in daemon.output(), 5, "the refusal")
        assert "buses[0].label: expected a string, got 3" in daemon.output()
        time.sleep(0.3)
        assert beats(probe, site.root, "b1")[-1]["data"]["label"] == "after"
        assert daemon.output().count("connected to broker") == 1  # never dropped
        cmd = site.command(site.gateway_id, "ping")
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
        assert probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])["code"] == "ok"
    finally:
        daemon.stop()


@pytest.mark.parametrize("overlaps", [False, True])
def test_a_command_reaches_the_driver_before_its_id_is_durable_only_if_it_overlaps(
    tmp_path: Path, overlaps: bool
) -> None:
    """A remote command's id is made durable (Action.ready) before anything moves. A driver
    that does not await ``ready`` itself is called only after it is done; one that does (the
    BLE driver: it reads the lock's challenge meanwhile) is called at once."""
    import asyncio

    from drivers.ble.driver import BleDriver
    from gatewayd.model import Action
    from gatewayd.supervisor import Supervised
    from tests import metrics_site as ms

    calls: list[tuple[str, bool]] = []

    class Piles:
        overlaps_ready = overlaps

        async def execute(self, action: Action) -> dict[str, str]:
            assert action.ready is not None
            done = asyncio.ensure_future(action.ready).done()
            calls.append((action.name, done))
            if overlaps:
                await action.ready
            return {"done": action.name}

    gw = ms.make_gateway(tmp_path, chargers=1)
    try:
        sup = Supervised("rs485", lambda: None, lambda *a: None)  # type: ignore[arg-type,return-value]
        sup.driver = Piles()  # type: ignore[assignment]
        gw.buses["rs485"] = sup

        async def scenario() -> tuple[bool, dict[str, str]]:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            action = Action("pile-1", "port_on", {"port": 1}, ready=ready)
            task = asyncio.ensure_future(gw.service.execute(action))
            await asyncio.sleep(0.1)
            called_early = bool(calls)
            ready.set_result(None)
            return called_early, dict(await task)

        called_early, result = asyncio.run(scenario())
    finally:
        ms.close_gateway(gw)
    assert called_early is overlaps
    assert calls == [("port_on", not overlaps)] and result == {"done": "port_on"}
    assert BleDriver.overlaps_ready  # the one built-in driver that reads before it acts
