"""Outbox figures (issue 7), each beside its baseline in the same run:

- intake: events/s into the outbox with the broker down (so every event is written and
  fsynced by the group commit), against a bare batched SQLite insert loop (WAL,
  synchronous=FULL) writing the same rows in the same batch sizes;
- drain: events/s from a backlog to a local mosquitto, every one acknowledged (QoS 1), through
  the real uplink, against a bare paho QoS 1 publish loop of the same payloads;
- bytes written to disk per event over its whole life (stored, acknowledged, removed), from
  /proc/self/io, against the event's JSON size;
- start-up (issue 13): constructing the outbox (recovery included) over a full 64 MB backlog
  of which one segment is damaged, against the same backlog undamaged, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bench.common import percentile, row
from firmware_stubs.broker import Broker
from gatewayd import config as config_mod
from gatewayd.model import Event
from gatewayd.uplink.lanes import INFO, URGENT
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.publisher import BareHouse, Publisher
from gatewayd.uplink.topics import Topics, dumps

ROOT = "pingan/v1/gw-bench"


def payloads(n: int) -> list[tuple[str, bytes, int]]:
    kinds = [
        ("smoke-301", "smoke.heartbeat", "info", {"battery_mv": 3010, "rssi_dbm": -61}),
        ("pile-7", "charger.port_started", "info", {"port": 4, "power_w": 412}),
        ("door-main", "door.unlocked", "info", {"method": "card", "user": 4711}),
        ("smoke-302", "smoke.alarm", "critical", {"density": 150}),
    ]
    out = []
    for i in range(n):
        dev, typ, sev, data = kinds[i % len(kinds)]
        ev = Event(dev, typ, sev, {**data, "n": i})  # type: ignore[arg-type]
        out.append((f"{ROOT}/events/{dev}", dumps(ev.to_json()), INFO if ev.severity == "info" else URGENT))
    return out


def io_written() -> int:
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"])


# -- intake ---------------------------------------------------------------------------------


def intake_outbox(directory: str, msgs: list[tuple[str, bytes, int]]) -> tuple[float, int]:
    async def go() -> tuple[float, int]:
        box = Outbox(directory, window=0.05)
        runner = asyncio.create_task(box.run())
        t0 = time.perf_counter()
        for i, (topic, payload, lane) in enumerate(msgs):
            box.put(topic, payload, lane=lane)
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # the commit task gets its turn, as in the daemon
        while box.unwritten or box._committing:
            await asyncio.sleep(0.005)
        await box.commit()
        elapsed = time.perf_counter() - t0
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        box.close()
        return elapsed, box.bytes_written

    return asyncio.run(go())


def intake_sqlite(directory: str, msgs: list[tuple[str, bytes, int]], batch: int) -> float:
    db = sqlite3.connect(os.path.join(directory, "bare.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE m (seq INTEGER PRIMARY KEY, lane INT, created REAL, topic TEXT, payload BLOB)"
    )
    t0 = time.perf_counter()
    for start in range(0, len(msgs), batch):
        rows = [
            (start + i, lane, time.time(), topic, payload)
            for i, (topic, payload, lane) in enumerate(msgs[start : start + batch])
        ]
        db.executemany("INSERT INTO m VALUES (?,?,?,?,?)", rows)
        db.commit()
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


# -- drain ----------------------------------------------------------------------------------


def drain_outbox(directory: str, port: int, n: int) -> float:
    cfg = config_mod.parse(
        {
            "gateway": {"id": "gw-bench", "data_dir": directory},
            "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
        }
    )

    async def go() -> float:
        box = Outbox(directory, window=0.05)  # the backlog written by the intake run
        assert box.depth == n, (box.depth, n)
        pub = Publisher(Topics(ROOT), box, time.time(), "", BareHouse())
        done = asyncio.Event()
        started = 0.0

        def acked(mid: int) -> None:
            pub.on_acked(mid)
            if box.depth == 0:
                done.set()

        def connected() -> None:
            nonlocal started
            started = time.perf_counter()
            pub.on_connected()

        link = MqttLink(
            cfg,
            will=(f"{ROOT}/status", b"{}"),
            on_message=lambda *_: None,
            on_connected=connected,
            on_acked=acked,
            on_disconnected=pub.on_disconnected,
            subscriptions=(),
        )
        pub.bind(link, list, lambda: False)
        async with link:
            await asyncio.wait_for(done.wait(), 120)
            elapsed = time.perf_counter() - started
        await box.commit(final=True)
        box.close()
        return elapsed

    return asyncio.run(go())


def drain_bare(port: int, msgs: list[tuple[str, bytes, int]]) -> float:
    """paho on its own thread, publishing with at most 100 messages in flight (as the outbox
    does): handing it 100 000 at once makes its internal queue quadratic, which would flatter
    the outbox."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-drain")
    c.max_inflight_messages_set(100)
    window = threading.Semaphore(100)
    done = threading.Event()
    n_acked = 0

    def on_publish(*_a: Any) -> None:
        nonlocal n_acked
        n_acked += 1
        window.release()
        if n_acked == len(msgs):
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    for topic, payload, _lane in msgs:
        window.acquire()
        c.publish(topic, payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return elapsed


# -- start-up over a damaged backlog ----------------------------------------------------------


def build_backlog(directory: str, msgs: list[tuple[str, bytes, int]], size: int) -> int:
    """Fill an outbox with ``size`` bytes of segments, the broker away; return the events."""

    async def go() -> int:
        box = Outbox(directory, budget_bytes=2 * size, window=3600)
        n = 0
        while box.disk_bytes < size:
            for topic, payload, lane in msgs[:2000]:
                box.put(topic, payload, lane=lane)
            n += 2000
            await box.commit()
        box.close()
        return n

    return asyncio.run(go())


def damage_one_segment(directory: Path) -> tuple[Path, int]:
    """In the middle segment of the info lane: a flipped bit, a 4 KiB run of NULs and a 4 KiB
    run of garbage (what a failing card does), spread over the file. Returns the file and how
    many damaged records or runs the outbox reports."""
    segs = sorted(directory.glob("lane1-*.seg"))
    seg = segs[len(segs) // 2]
    data = bytearray(seg.read_bytes())
    third = len(data) // 3
    data[third // 2] ^= 0x08
    data[third : third + 4096] = bytes(4096)
    data[2 * third : 2 * third + 4096] = os.urandom(4096)
    seg.write_bytes(data)
    reports: list[int] = []
    Outbox(str(directory), on_damaged=lambda n, _p: reports.append(n)).close()
    return seg, sum(reports)


def startup_seconds(directory: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    box = Outbox(directory)
    elapsed = time.perf_counter() - t0
    depth = box.depth
    box.close()
    return elapsed, depth


def startup_rows(tmp: Path, msgs: list[tuple[str, bytes, int]], quick: bool) -> list[dict[str, Any]]:
    size = (16 if quick else 64) << 20
    logging.getLogger("gatewayd.uplink.outbox").setLevel(logging.ERROR)  # the damage, once per start
    good, bad = tmp / "good", tmp / "bad"
    n = build_backlog(str(good), msgs, size)
    shutil.copytree(good, bad)
    _seg, damaged = damage_one_segment(bad)
    t_good: list[float] = []
    t_bad: list[float] = []
    depths = set()
    for _ in range(3 if quick else 7):  # alternated, both from the page cache
        for dest, where in ((t_good, good), (t_bad, bad)):
            elapsed, depth = startup_seconds(str(where))
            dest.append(elapsed * 1000)
            depths.add((where.name, depth))
    g, b = percentile(t_good, 50), percentile(t_bad, 50)
    mb = sum(f.stat().st_size for f in good.iterdir()) / (1 << 20)
    lost = dict(depths)["good"] - dict(depths)["bad"]
    return [
        row(f"start-up over a {mb:.0f} MB backlog ({n} events), one segment damaged, median",
            b, "ms", "the same backlog undamaged", g, "≤ 2 × baseline", b <= 2 * g),
        row(f"events lost to that damage ({damaged} damaged records or runs reported)",
            lost, "events", target="only the damaged ones (≤ 60)", ok=0 < lost <= 60),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    n = 20_000 if quick else 100_000
    msgs = payloads(n)
    avg_json = sum(len(p) for _, p, _ in msgs) / n
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DISK", str(Path.home()))) as d:
        tmp = Path(d)
        (tmp / "box").mkdir()
        (tmp / "sqlite").mkdir()
        io0 = io_written()
        t_box, _ = intake_outbox(str(tmp / "box"), msgs)
        io_intake = io_written() - io0
        t_sql = intake_sqlite(str(tmp / "sqlite"), msgs, batch=2000)
        r_box, r_sql = n / t_box, n / t_sql
        rows.append(
            row(
                "intake into the outbox (broker down, all fsynced)",
                r_box,
                "events/s",
                "bare batched SQLite insert (WAL, synchronous=FULL)",
                r_sql,
                "≥ 20,000/s and ≥ 0.5 × baseline",
                r_box >= 20_000 and r_box >= 0.5 * r_sql,
            )
        )
        broker = Broker(tmp)
        broker.start()
        try:
            io1 = io_written()
            t_drain = drain_outbox(str(tmp / "box"), broker.port, n)
            io2 = io_written()
            t_bare = drain_bare(broker.port, msgs)
        finally:
            broker.stop()
        d_box, d_bare = n / t_drain, n / t_bare
        rows.append(
            row(
                "drain backlog to local mosquitto (QoS 1, acknowledged)",
                d_box,
                "events/s",
                "bare paho QoS 1 publish loop",
                d_bare,
                "≥ 10,000/s and ≥ 0.5 × baseline",
                d_box >= 10_000 and d_box >= 0.5 * d_bare,
            )
        )
        box_written = io_intake + (io2 - io1)  # the outbox's own writes: intake, then drain
        left = sum(f.stat().st_size for f in (tmp / "box").iterdir())
        per_event = box_written / n
        rows.append(
            row(
                "bytes written per event, whole life (stored, acked, removed)",
                per_event,
                "B",
                "the event's JSON size",
                avg_json,
                "≤ 3 × baseline",
                per_event <= 3 * avg_json,
            )
        )
        rows.append(
            row(
                "outbox left on disk after the drain",
                left,
                "B",
                target="≤ 4 KiB (the watermarks)",
                ok=left <= 4096,
            )
        )
        rows += startup_rows(tmp, msgs, quick)
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(json.dumps(r, ensure_ascii=False))
