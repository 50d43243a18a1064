"""A clean stop, as the platform sees it: the gateway's "offline" is the last word.

Drivers let go of their ports first, and what they say on the way out (a lock disconnected, a
receiver closed) goes before the retained ``{"online": false}`` status: a platform that saw the
gateway go offline must not see it speak afterwards.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import Broker, Daemon, Probe, install_plugin, make_site, wait_until

FAREWELL = """
import asyncio
from gatewayd.driver import Driver


class Farewell(Driver):
    name = "farewell"
    bus_schema = {}

    async def run(self):
        key = "farewell." + self.bus.name
        self.ctx.publish_state(self.ctx.gateway_id, {key: {"up": True}})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # letting go of a port takes a moment
            self.ctx.publish_state(self.ctx.gateway_id, {key: {"up": False}})
            raise
"""


def test_what_drivers_say_on_the_way_out_goes_before_the_offline_status(
    tmp_path: Path, broker: Broker
) -> None:
    site = make_site(tmp_path, broker.url, '[[buses]]\nname = "x"\ndriver = "farewell"\n')
    env = install_plugin(
        tmp_path / "plugins", "farewell_plugin", FAREWELL, {"farewell": "Farewell"}
    )
    probe = Probe(broker.port, f"{site.root}/#")
    daemon = Daemon(site, env=env)
    try:
        daemon.start()
        state = f"{site.root}/state/{site.gateway_id}"
        probe.wait(state, lambda b: b.get("farewell.x") == {"up": True})
        assert daemon.stop() == 0
        wait_until(lambda: any(m.json().get("online") is False for m in probe.on(f"{site.root}/status")),
                   5, "the offline status")  # fmt: skip
        order = [(m.topic, m.json()) for m in probe.messages if m.topic.startswith(site.root)]
    finally:
        probe.close()
        if daemon.alive:
            daemon.kill()
    last_status = max(i for i, (t, b) in enumerate(order) if t.endswith("/status"))
    assert order[last_status][1]["online"] is False
    farewell = [i for i, (t, b) in enumerate(order) if b.get("farewell.x") == {"up": False}]
    assert farewell and farewell[0] < last_status, order[-5:]
    assert last_status == len(order) - 1, order[last_status:]  # nothing after "offline"
