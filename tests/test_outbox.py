"""The outbox in-process: classes of service, write-behind, recovery, spill, budget."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gatewayd.uplink import lanes as lanes_mod
from gatewayd.uplink.lanes import INFO, URGENT
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.segments import list_segments, scan


def records(directory: Path, lane: int) -> list[int]:
    return [r.seq for p in list_segments(str(directory), lane) for r, _ in scan(p)]


def drain(box: Outbox, ack: bool = True) -> list[tuple[str, bytes]]:
    """Send everything as a connected uplink would; acknowledge each at once."""
    out, mid = [], 0
    while (msg := box.next()) is not None:
        mid += 1
        box.sent(msg, mid)
        out.append((msg.topic, msg.payload))
        if ack:
            box.acked(mid)
    return out


def test_urgent_first_then_info_then_telemetry_each_in_order(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path))
    box.put("t/info", b"i1", lane=INFO)
    box.put_telemetry("t/tel", b"x1")
    box.put("t/urgent", b"u1", lane=URGENT)
    box.put("t/info", b"i2", lane=INFO)
    box.put("t/urgent", b"u2", lane=URGENT)
    assert [p for _, p in drain(box)] == [b"u1", b"u2", b"i1", b"i2", b"x1"]
    assert box.depth == 0
    box.close()


def test_acknowledged_before_the_commit_never_touches_the_disk(tmp_path: Path) -> None:
    async def go() -> None:
        box = Outbox(str(tmp_path), window=0.05)
        for i in range(50):
            box.put("t", b"%d" % i, lane=URGENT)
        drain(box)  # the broker took them all within the window
        box.put("t", b"late", lane=URGENT)  # this one is not acknowledged
        await box.commit()
        assert records(tmp_path, URGENT) == [51]
        box.close()

    asyncio.run(go())


def test_kill_after_commit_loses_nothing_and_torn_tail_is_cut(tmp_path: Path) -> None:
    async def go() -> None:
        box = Outbox(str(tmp_path))
        for i in range(10):
            box.put(f"ev/{i % 2}", b"p%d" % i, lane=URGENT if i % 3 == 0 else INFO)
        await box.commit()
        # No close(): as if killed. Then a torn record at the end, as a power cut leaves it.
        [seg] = list_segments(str(tmp_path), INFO)
        with open(seg, "ab") as f:
            f.write(b"\x40\x00\x00\x00garbage")

    asyncio.run(go())
    again = Outbox(str(tmp_path))
    got = [p for _, p in drain(again)]
    assert got == [b"p0", b"p3", b"p6", b"p9", b"p1", b"p2", b"p4", b"p5", b"p7", b"p8"]
    [seg] = list_segments(str(tmp_path), INFO)
    assert len(list(scan(seg))) == 6  # the torn tail is gone, the good records kept

    async def more() -> None:
        again.put("ev/x", b"after", lane=INFO)
        await again.commit(final=True)
        again.close()

    asyncio.run(more())
    # Everything before was acknowledged: its segment is gone, "after" starts a fresh one.
    assert not Path(seg).exists()
    [fresh] = list_segments(str(tmp_path), INFO)
    assert [r.payload for r, _ in scan(fresh)] == [b"after"]


def test_acknowledged_messages_are_not_resent_after_restart(tmp_path: Path) -> None:
    async def go() -> None:
        box = Outbox(str(tmp_path))
        for i in range(6):
            box.put("t", b"m%d" % i, lane=INFO)
        await box.commit()
        for mid in range(1, 5):  # the broker acknowledges the first four
            msg = box.next()
            assert msg is not None
            box.sent(msg, mid)
            box.acked(mid)
        await box.commit(final=True)  # persists the watermark
        box.close()

    asyncio.run(go())
    assert [p for _, p in drain(Outbox(str(tmp_path)))] == [b"m4", b"m5"]


def test_requeue_after_disconnect_keeps_order(tmp_path: Path) -> None:
    box = Outbox(str(tmp_path))
    for i in range(5):
        box.put("t", b"%d" % i, lane=INFO)
    for mid in range(1, 4):
        msg = box.next()
        assert msg is not None
        box.sent(msg, mid)
    box.acked(1)
    box.requeue()  # mids 2 and 3 were never acknowledged
    assert [p for _, p in drain(box)] == [b"1", b"2", b"3", b"4"]
    box.close()


def test_long_backlog_spills_to_disk_and_comes_back_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_mod, "MEMORY_MESSAGES", 100)

    async def go() -> list[bytes]:
        box = Outbox(str(tmp_path))
        for i in range(1000):
            box.put("t", b"%04d" % i, lane=INFO)
            if i % 97 == 0:
                await box.commit()
        assert len(box.lanes[INFO].queue) == 100
        assert box.depth == 1000
        out: list[bytes] = []
        mid = 0
        while (msg := box.next()) is not None:
            mid += 1
            box.sent(msg, mid)
            box.acked(mid)
            out.append(msg.payload)
            if mid % 150 == 0:
                await box.commit()
        box.close()
        return out

    assert asyncio.run(go()) == [b"%04d" % i for i in range(1000)]


def test_budget_drops_oldest_info_keeps_urgent_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gatewayd.uplink.segments.SEGMENT_BYTES", 20_000)
    fullness: list[bool] = []

    async def go() -> Outbox:
        box = Outbox(str(tmp_path), budget_bytes=60_000, on_full=fullness.append)
        payload = os.urandom(150)
        for i in range(2000):
            box.put("events/x", payload, lane=INFO)
            if i % 10 == 0:
                box.put("events/alarm", b"%d" % i, lane=URGENT)
            if i % 100 == 0:
                await box.commit()
        await box.commit()
        return box

    box = asyncio.run(go())
    assert (
        box.disk_bytes <= 60_000 + 20_000 + 2_000
    )  # budget, plus the urgent segment being written
    assert box.lanes[INFO].dropped > 1000
    assert fullness and fullness[0] is True
    sent = drain(box)
    urgent = [p for t, p in sent if t == "events/alarm"]
    assert urgent == [b"%d" % i for i in range(0, 2000, 10)]  # every one, in order
    info = [t for t, _ in sent if t == "events/x"]
    assert len(info) + box.lanes[INFO].dropped == 2000
    box.close()


def test_an_idle_outbox_sleeps_and_a_message_wakes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was 10 wake-ups a second with nothing to write (issue 17). Now: no commit while idle;
    a message is written one window after it arrives; its acknowledgement is saved within
    MARKS_EVERY; then the outbox sleeps again."""
    from gatewayd.uplink import outbox as outbox_mod

    monkeypatch.setattr(outbox_mod, "MARKS_EVERY", 0.3)

    async def go() -> list[int]:
        box = Outbox(str(tmp_path), window=0.05)
        commits: list[int] = []
        real = box.commit

        async def counted(final: bool = False) -> None:
            commits.append(box.bytes_written)
            await real(final)

        box.commit = counted  # type: ignore[method-assign]
        task = asyncio.create_task(box.run())
        seen = []
        await asyncio.sleep(0.6)
        seen.append(len(commits))  # idle from the start
        box.put("t", b"x" * 100, lane=URGENT)
        await asyncio.sleep(0.15)
        seen.append(len(commits))  # written one window later
        written = box.bytes_written
        drain(box)  # sent and acknowledged
        await asyncio.sleep(0.6)
        seen.append(len(commits))  # the watermarks saved
        await asyncio.sleep(0.6)
        seen.append(len(commits))  # asleep again
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        box.close()
        assert written > 100
        return seen

    idle, after_put, after_ack, later = asyncio.run(go())
    assert idle == 0
    assert after_put == 1
    assert after_ack - after_put in (1, 2)
    assert later == after_ack
