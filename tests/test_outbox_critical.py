"""The critical lane (issue 14, "fire first on the wire"), in-process: a critical event leaves
the outbox ahead of any backlog, however long and wherever it waits (memory, disk, in flight);
it is as durable as the rest; an outbox written before the lane existed still loads; and the
publisher times each critical event from its ``ts`` to the broker's PUBACK."""

from __future__ import annotations

import asyncio
import json
import math
import time
import zlib
from pathlib import Path

import pytest

from gatewayd.model import Event
from gatewayd.uplink import lanes as lanes_mod
from gatewayd.uplink.delivery import BUCKETS, DeliveryTimes
from gatewayd.uplink.lanes import CRITICAL, INFO, URGENT
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.outbox_store import load_marks
from gatewayd.uplink.publisher import BareHouse, Publisher
from gatewayd.uplink.segments import list_segments
from gatewayd.uplink.topics import Topics
from tests.test_outbox import drain


def test_critical_first_then_urgent_info_telemetry_each_in_order(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path))
    box.put("t/info", b"i1", lane=INFO)
    box.put("t/urgent", b"u1", lane=URGENT)
    box.put("t/fire", b"c1", lane=CRITICAL)
    box.put_telemetry("t/tel", b"x1")
    box.put("t/info", b"i2", lane=INFO)
    box.put("t/fire", b"c2", lane=CRITICAL)
    box.put("t/urgent", b"u2", lane=URGENT)
    assert [p for _, p in drain(box)] == [b"c1", b"c2", b"u1", b"u2", b"i1", b"i2", b"x1"]
    box.close()


def test_a_fire_overtakes_ten_thousand_spilled_and_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 warnings, command results and info events, most of them waiting on disk, a
    window of them in flight: the fire is the very next message sent, and everything else
    still follows in its class's order."""
    monkeypatch.setattr(lanes_mod, "MEMORY_MESSAGES", 500)

    async def go() -> list[bytes]:
        box = Outbox(str(tmp_path))
        for i in range(10_000):
            box.put("t", b"%05d" % i, lane=URGENT if i % 3 == 0 else INFO)
            if i % 1000 == 999:
                await box.commit()
        assert box.lanes[URGENT].spilled and box.lanes[INFO].spilled
        for mid in range(1, 101):  # the broker is back: a window of the backlog in flight
            msg = box.next()
            assert msg is not None
            box.sent(msg, mid)
        box.put("t/fire", b"fire", lane=CRITICAL)
        first = box.next()
        assert first is not None and first.payload == b"fire"
        box.requeue()  # and the link drops before any PUBACK: the fire stays first
        out = [p for _, p in drain(box)]
        box.close()
        return out

    out = asyncio.run(go())
    assert out[0] == b"fire"
    urgent = [b"%05d" % i for i in range(10_000) if i % 3 == 0]
    info = [b"%05d" % i for i in range(10_000) if i % 3]
    assert out[1:] == urgent + info


def test_critical_messages_survive_a_kill_with_their_ts(tmp_path: Path) -> None:
    frame_ts = time.time() - 42.0

    async def go() -> None:
        box = Outbox(str(tmp_path))
        box.put("t/info", b"i", lane=INFO)
        box.put("t/fire", b"fire", lane=CRITICAL, created=frame_ts)
        await box.commit()  # no close(): as if killed

    asyncio.run(go())
    [seg] = list_segments(str(tmp_path), CRITICAL)
    assert Path(seg).name == "lane2-0000000000000002.seg"
    again = Outbox(str(tmp_path))
    fire = again.next()
    assert fire is not None and fire.payload == b"fire" and fire.lane == CRITICAL
    assert fire.created == frame_ts  # the clock of the delivery time starts at the frame
    assert [p for _, p in drain(again)] == [b"fire", b"i"]
    again.close()


def two_lane_marks(urgent: int, info: int, seq: int) -> str:
    """acked.json as the outbox before the critical lane wrote it."""
    crc = zlib.crc32(json.dumps([[urgent, info], seq], separators=(",", ":")).encode())
    return json.dumps({"v": 2, "watermarks": [urgent, info], "seq": seq, "crc": crc})


def test_an_outbox_from_before_the_critical_lane_loads_and_stays_readable(
    tmp_path: Path,
) -> None:
    """Segments lane0 and lane1 and a two-watermark acked.json, as the two-lane outbox left
    them: the backlog is delivered (acknowledged messages not again), a new fire goes first,
    and the watermarks file written afterwards still gives a two-lane reader its two."""

    async def old() -> None:
        box = Outbox(str(tmp_path))
        for i in range(1, 9):
            box.put("t", b"%d" % i, lane=URGENT if i % 2 else INFO)
        await box.commit()
        box.close()

    asyncio.run(old())
    assert not list_segments(str(tmp_path), CRITICAL)
    marks = tmp_path / "acked.json"
    marks.write_text(two_lane_marks(3, 2, 8))  # 1, 3 (urgent) and 2 (info) acknowledged

    box = Outbox(str(tmp_path))
    box.put("t/fire", b"fire", lane=CRITICAL)
    assert [p for _, p in drain(box)] == [b"fire", b"5", b"7", b"4", b"6", b"8"]

    async def close() -> None:
        await box.commit(final=True)
        box.close()

    asyncio.run(close())
    saved = json.loads(marks.read_text())
    assert saved["watermarks"] == [9, 9, 9]  # urgent, info, critical: by lane number
    assert load_marks(str(marks), 2) == ([9, 9], 9)  # what a two-lane reader takes
    assert drain(Outbox(str(tmp_path))) == []


def test_over_the_budget_info_goes_and_every_critical_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gatewayd.uplink.segments.SEGMENT_BYTES", 20_000)

    async def go() -> Outbox:
        box = Outbox(str(tmp_path), budget_bytes=60_000)
        for i in range(2000):
            box.put("events/x", bytes(150), lane=INFO)
            if i % 10 == 0:
                box.put("events/fire", b"%d" % i, lane=CRITICAL)
            if i % 100 == 0:
                await box.commit()
        await box.commit()
        return box

    box = asyncio.run(go())
    assert box.lanes[INFO].dropped > 1000
    assert box.lanes[CRITICAL].dropped == 0
    sent = drain(box)
    assert [p for t, p in sent if t == "events/fire"] == [b"%d" % i for i in range(0, 2000, 10)]
    assert all(t == "events/fire" for t, _ in sent[:200])
    box.close()


def test_the_histogram_counts_each_critical_event_from_its_frame(tmp_path: Path) -> None:
    """An alarm whose frame came 12 s before the PUBACK (it waited out an outage) counts 12 s;
    one acknowledged at once counts under 50 ms; warnings and info events are not counted."""
    box = Outbox(str(tmp_path))
    pub = Publisher(Topics("pingan/v1/gw"), box, time.time(), "", BareHouse())
    now = time.time()
    pub.event(Event("smoke-301", "smoke.alarm", "critical", {}, ts=now - 12.0))
    pub.event(Event("smoke-301", "smoke.low_battery", "warning", {}, ts=now - 12.0))
    pub.event(Event("smoke-302", "smoke.heartbeat", "info", {}, ts=now - 12.0))
    mids = {}
    for mid in range(1, 4):
        msg = box.next()
        assert msg is not None
        box.sent(msg, mid)
        mids[json.loads(msg.payload)["type"]] = mid
    assert list(mids) == ["smoke.alarm", "smoke.low_battery", "smoke.heartbeat"]
    for mid in mids.values():
        pub.on_acked(mid)
    pub.event(Event("gw", "gateway.fire_mode", "critical", {}))
    msg = box.next()
    assert msg is not None and msg.lane == CRITICAL
    box.sent(msg, 4)
    pub.on_acked(4)
    pub.on_acked(4)  # a PUBACK seen twice is one delivery
    fig = pub.delivery.figures()
    le = dict(zip(fig.bounds, fig.cumulative, strict=True))
    assert fig.count == 2
    assert le[0.05] == 1  # the fire mode event, acknowledged at once
    assert le[10.0] == 1 and le[30.0] == 2  # the alarm: over the 10 s the standard allows
    assert 12.0 <= fig.sum < 12.5
    box.close()


def test_bucket_bounds_are_inclusive_and_odd_values_are_safe() -> None:
    times = DeliveryTimes()
    for seconds in (0.05, 10.0, 10.001, -0.2, math.nan, math.inf, 5_000.0):
        times.observe(seconds)
    fig = times.figures()
    le = dict(zip(fig.bounds, fig.cumulative, strict=True))
    assert fig.bounds == (*BUCKETS, math.inf)
    assert le[0.05] == 2  # 0.05 itself, and a ts a hair ahead of the clock, read as 0
    assert le[10.0] == 3
    assert le[30.0] == 4
    assert le[math.inf] == fig.count == 5  # NaN and infinity are not measurements
