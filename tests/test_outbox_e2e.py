"""Store-and-forward end to end: the broker is down, events pile up, the daemon is killed with
SIGKILL mid-outage and restarted, the broker returns: every alarm, access event and command
result arrives, exactly the ids generated, in order per device and class."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from gatewayd.uplink.lanes import LANES
from gatewayd.uplink.segments import list_segments, scan
from tests.harness import Broker, Daemon, Probe, Site, install_plugin, make_site, wait_until

LOADGEN = '''
import asyncio, json, os
from gatewayd.driver import Driver
from gatewayd.model import Event
from gatewayd.schema import Int, Str

KINDS = [("critical", "smoke.alarm"), ("warning", "smoke.low_battery"), ("info", "smoke.heartbeat"),
         ("info", "door.unlocked")]

class LoadGen(Driver):
    """Each start emits `events` events over three devices and `telemetry` readings, once per
    phase (phase = how many times it has started), and appends what it emitted to `log`."""
    name = "loadgen"
    bus_schema = {"events": Int(0, 10**6), "telemetry": Int(0, 10**6, default=0), "log": Str()}

    async def run(self) -> None:
        log = self.bus.settings["log"]
        phase = sum(1 for _ in open(log)) if os.path.exists(log) else 0
        emitted = []
        for i in range(self.bus.settings["events"]):
            sev, typ = KINDS[i % len(KINDS)]
            dev = f"dev-{i % 3}"
            ev = Event(dev, typ, sev, {"phase": phase, "n": i})
            self.ctx.emit(ev)
            emitted.append([ev.id, dev, typ, phase, i])
            if i % 50 == 0:
                await asyncio.sleep(0)
        for i in range(self.bus.settings["telemetry"]):
            self.ctx.publish_telemetry("dev-0", {"phase": phase, "n": i})
        with open(log, "a") as f:
            f.write(json.dumps(emitted) + "\\n")
        await asyncio.Event().wait()
'''


def stored(site_dir: Path) -> int:
    d = site_dir / "data" / "outbox"
    if not d.exists():
        return 0
    return sum(1 for lane in LANES for p in list_segments(str(d), lane) for _ in scan(p))


@contextlib.contextmanager
def killed_mid_outage(
    tmp_path: Path, broker: Broker, events: int, head: str = "", bus: str = ""
) -> Iterator[tuple[Site, Daemon, Path]]:
    """The broker is down; the daemon emits ``events`` events, all reach the disk, and it is
    killed with SIGKILL. Yields the site, the (stopped) daemon and the log of what it emitted;
    the daemon is stopped on the way out."""
    log = tmp_path / "emitted.jsonl"
    body = f'{head}[[buses]]\nname = "gen"\ndriver = "loadgen"\nevents = {events}\n{bus}log = "{log}"\n'
    site = make_site(tmp_path, broker.url, body)
    env = install_plugin(tmp_path / "plugins", "loadgen_plugin", LOADGEN, {"loadgen": "LoadGen"})
    broker.stop()
    daemon = Daemon(site, env=env)
    try:
        daemon.start(wait_ready=False)
        wait_until(lambda: log.exists() and stored(tmp_path) == events, 15, "phase 1 on disk")
        daemon.kill()  # mid-outage, no goodbye
        yield site, daemon, log
    finally:
        if daemon.alive:
            daemon.stop()


def test_outage_with_sigkill_loses_no_event_and_keeps_order(tmp_path: Path, broker: Broker) -> None:
    # Every read sent (no coalescing): the outbox's telemetry buffer is what is under test.
    head = "[outbox]\ntelemetry_buffer = 50\n\n[uplink]\nreport = \"every_reading\"\n\n"
    with killed_mid_outage(tmp_path, broker, 400, head, "telemetry = 120\n") as (site, daemon, log):
        daemon.start(wait_ready=False)
        wait_until(lambda: stored(tmp_path) == 800, 15, "phase 2 on disk")
        broker.start()
        probe = Probe(broker.port)
        try:
            wait_until(
                lambda: len(probe.on(f"{site.root}/events/+")) >= 800, 30, "the backlog to drain"
            )
            # Telemetry is the lowest class: it drains after every event.
            wait_until(lambda: len(probe.on(f"{site.root}/telemetry/+")) >= 50, 10, "the telemetry")
            got = [m.json() for m in probe.on(f"{site.root}/events/+")]
            telemetry = [m.json()["values"] for m in probe.on(f"{site.root}/telemetry/+")]
        finally:
            probe.close()
    emitted = [row for line in log.read_text().splitlines() for row in json.loads(line)]
    assert len(emitted) == 800
    got_ids = [e["id"] for e in got if e["device"].startswith("dev-")]
    assert set(got_ids) == {row[0] for row in emitted}  # exactly the ids generated
    assert len(got_ids) - len(set(got_ids)) <= 100  # duplicates only for PUBACKs lost in the kill
    # Order: per device and class of service, in the order generated.
    # The load generator's devices belong to no family, so no event type of theirs is declared
    # urgent (as a door's access decisions are): severity alone sorts them.
    for dev in ("dev-0", "dev-1", "dev-2"):
        for cls in ("critical", "warning", "info"):
            seq = [
                (e["data"]["phase"], e["data"]["n"])
                for e in got
                if e["device"] == dev and e["severity"] == cls
            ]
            deduped = list(dict.fromkeys(seq))
            assert deduped == sorted(deduped), (dev, cls)
    # Critical before warning before info in the drain of the backlog.
    first_warning = next(i for i, e in enumerate(got) if e["severity"] == "warning")
    first_info = next(i for i, e in enumerate(got) if e["severity"] == "info")
    assert all(e["severity"] == "critical" for e in got[:first_warning])
    assert first_warning >= 150  # 200 critical events in all: the first ones before any other
    assert all(e["severity"] != "info" for e in got[:first_info])
    assert first_info >= 300  # 400 critical and warning events; the first ones before any info
    # Telemetry: memory only, so phase 1's died with the process; phase 2 kept its newest 50.
    assert [t["n"] for t in telemetry] == list(range(70, 120))
    assert all(t["phase"] == 1 for t in telemetry)
    assert os.path.exists(tmp_path / "data" / "outbox")


def test_a_flipped_bit_in_a_segment_costs_that_event_only(tmp_path: Path, broker: Broker) -> None:
    """The daemon is killed with a backlog on disk; one bit of one stored event flips (the SD
    card); on restart everything else is delivered, and the damage is logged."""
    with killed_mid_outage(tmp_path, broker, 300) as (site, daemon, log):
        # The documented layout (docs/outbox.md): 36-byte header, body length at +8, topic
        # length at +34. Flip one bit in the body of a record in the middle of the largest file.
        d = tmp_path / "data" / "outbox"
        seg = max(d.glob("lane*.seg"), key=lambda p: p.stat().st_size)
        data = bytearray(seg.read_bytes())
        starts, pos = [], 0
        while pos < len(data):
            assert data[pos : pos + 4] == b"\xffOB2"
            starts.append(pos)
            pos += 36 + int.from_bytes(data[pos + 8 : pos + 12], "little")
        victim = starts[len(starts) // 2]
        tlen = int.from_bytes(data[victim + 34 : victim + 36], "little")
        end = victim + 36 + int.from_bytes(data[victim + 8 : victim + 12], "little")
        lost_id = json.loads(bytes(data[victim + 36 + tlen : end]))["id"]
        data[(victim + 36 + tlen + end) // 2] ^= 0x10
        seg.write_bytes(data)
        daemon.start(wait_ready=False)
        wait_until(lambda: stored(tmp_path) >= 599, 15, "phase 2 on disk")  # + the damage event
        broker.start()
        probe = Probe(broker.port)
        try:
            wait_until(lambda: len(probe.on(f"{site.root}/events/+")) >= 599, 30, "the backlog")
            got = {m.json()["id"] for m in probe.on(f"{site.root}/events/+")}
            said = probe.wait(
                f"{site.root}/events/{site.gateway_id}",
                lambda e: e["type"] == "gateway.outbox_damaged",
            )
            assert (said["severity"], said["data"]) == (
                "warning", {"records": 1, "file": seg.name},
            )  # fmt: skip
        finally:
            probe.close()
    emitted = {row[0] for line in log.read_text().splitlines() for row in json.loads(line)}
    assert len(emitted) == 600
    assert {i for i in got if i in emitted} == emitted - {lost_id}
    assert f"1 damaged records or runs skipped in {seg}" in daemon.output()
