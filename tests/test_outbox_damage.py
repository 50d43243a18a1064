"""A damaged outbox loses only what the damage touched (issue 13, defect 9 and build item 4).

For 20 seeds: an outbox with every lane over several small segments, part of it acknowledged,
closed; then one segment (or the watermarks file) damaged in each way an SD card does it; then
reopened and drained as the publisher drains it. What the damage did not touch is delivered, in
order; the damage is counted and reported; reopening again after new writes loses nothing more.

The record boundaries of an undamaged file are found by this file's own reading of the layout
in docs/outbox.md, not by the product's reader.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gatewayd.uplink import lanes as lanes_mod
from gatewayd.uplink import segments
from gatewayd.uplink.lanes import CRITICAL, INFO, PRIORITY, URGENT
from gatewayd.uplink.outbox import Outbox

MAGIC = b"\xffOB2"
HEADER = 36  # magic 4, header crc 4, body length 4, body crc 4, seq 8, created 8, lane, qos, topic length 2
SEGMENT_KINDS = ("flip", "truncate", "nul_run", "garbage_run", "empty")
MARKS_KINDS = (
    "empty",
    "truncate",
    "flip",
    "watermark_up",  # the one flipped bit that would skip messages if it went unseen
    "garbage",
    "nul_filled",
    "non_utf8",
    "unknown_fields",
)


@dataclass
class Built:
    """What went into an outbox: every payload's number by lane, and which were acknowledged."""

    lane_of: dict[int, int] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)

    def pending(self) -> list[int]:
        """Still owed to the broker, in the order it must get them: critical first, then
        urgent, then info, each in order."""
        left = [n for n in self.lane_of if n not in self.acked]
        return sorted(left, key=self.order)

    def order(self, n: int) -> tuple[int, int]:
        return PRIORITY.index(self.lane_of[n]), n


def payload(n: int, rng: random.Random) -> bytes:
    return json.dumps({"n": n, "pad": "x" * rng.randint(5, 160)}).encode()


def number(p: bytes) -> int:
    return int(json.loads(p)["n"])


def drain(box: Outbox, ack: bool = True) -> list[int]:
    """Send everything as the publisher does; with ``ack`` False the link then drops, and what
    was in flight goes back to the queue."""
    out, mid = [], 0
    while (msg := box.next()) is not None:
        mid += 1
        box.sent(msg, mid)
        out.append(number(msg.payload))
        if ack:
            box.acked(mid)
    if not ack:
        box.requeue()
    return out


def acknowledge(box: Outbox, count: int) -> list[int]:
    """The broker takes the next ``count`` messages and acknowledges each; the link then drops."""
    out = []
    for mid in range(1, count + 1):
        msg = box.next()
        assert msg is not None
        box.sent(msg, mid)
        box.acked(mid)
        out.append(number(msg.payload))
    box.requeue()
    return out


async def fill(box: Outbox, built: Built, rng: random.Random, count: int) -> None:
    first = len(built.lane_of)
    for n in range(first, first + count):
        draw = rng.random()
        lane = CRITICAL if draw < 0.1 else URGENT if draw < 0.35 else INFO
        box.put(f"ev/{lane}", payload(n, rng), lane=lane)
        built.lane_of[n] = lane
        if rng.random() < 0.06:
            await box.commit()
    await box.commit()


def build(directory: Path, rng: random.Random) -> Built:
    built = Built()

    async def go() -> None:
        box = Outbox(str(directory))
        await fill(box, built, rng, rng.randint(120, 260))
        built.acked.update(acknowledge(box, rng.randint(0, 50)))
        await box.commit(final=True)
        box.close()

    asyncio.run(go())
    return built


def extents(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, payload number) of each record of an undamaged segment."""
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == MAGIC
        (length,) = struct.unpack_from("<I", data, pos + 8)
        (tlen,) = struct.unpack_from("<H", data, pos + 34)
        end = pos + HEADER + length
        out.append((pos, end, number(data[pos + HEADER + tlen : end])))
        pos = end
    return out


def damage(path: Path, kind: str, rng: random.Random) -> tuple[set[int], bool]:
    """Damage one segment; return the payload numbers of the records whose bytes changed, and
    whether the damage can be seen at all (a cut exactly between two records cannot)."""
    before = path.read_bytes()
    records = extents(path)
    data = bytearray(before)
    if kind == "flip":
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[rng.randrange(1, len(data)) :]
    elif kind in ("nul_run", "garbage_run"):
        at = rng.randrange(len(data))
        run = min(rng.randint(1, 600), len(data) - at)
        data[at : at + run] = bytes(run) if kind == "nul_run" else rng.randbytes(run)
    else:
        data.clear()
    path.write_bytes(data)
    touched = {n for start, end, n in records if data[start:end] != before[start:end]}
    seen = kind != "truncate" or len(data) not in {end for _s, end, _n in records}
    return touched, seen and bytes(data) != before


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("lane*-*.seg"))


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 3000)  # a few thousand bytes: many segments


@pytest.mark.usefixtures("small_segments")
@pytest.mark.parametrize("kind", SEGMENT_KINDS)
@pytest.mark.parametrize("seed", range(20))
def test_a_damaged_segment_costs_only_its_damaged_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, kind: str
) -> None:
    rng = random.Random(f"{seed}-{kind}")
    if seed % 2:  # half the seeds with a backlog longer than memory: read back from disk
        monkeypatch.setattr(lanes_mod, "MEMORY_MESSAGES", 30)
    built = build(tmp_path, rng)
    files = segment_files(tmp_path)
    assert len(files) >= 3, files
    target = rng.choice(files)
    touched, visible = damage(target, kind, rng)

    reports: list[tuple[int, str]] = []
    box = Outbox(str(tmp_path), on_damaged=lambda n, p: reports.append((n, p)))
    pending = built.pending()
    got = drain(box, ack=False)  # sent, then the link drops before any PUBACK
    survivors = [n for n in pending if n not in touched]
    assert [n for n in got if n not in touched] == survivors  # all of them, in order
    assert set(got) <= set(pending)  # nothing acknowledged comes back, nothing twice
    assert len(got) == len(set(got))
    if visible:
        assert reports, "damage not reported"
        assert {p for _n, p in reports} == {str(target)}
        assert all(n >= 1 for n, _p in reports)
        assert box.stats()["damaged_records"] == sum(n for n, _p in reports)
    else:
        assert reports == []

    async def more() -> None:  # the writer carries on in the same directory
        await fill(box, built, rng, 25)
        await box.commit(final=True)
        box.close()

    asyncio.run(more())
    new = [n for n in built.pending() if n not in pending]
    again = Outbox(str(tmp_path))
    delivered = drain(again)
    owed = sorted(got + new, key=built.order)
    assert delivered == owed  # what survived the damage, then the new ones: nothing more lost

    async def finish() -> None:
        await again.commit(final=True)
        again.close()

    asyncio.run(finish())
    assert drain(Outbox(str(tmp_path))) == []  # every acknowledgement kept
    assert segment_files(tmp_path) == []


def damage_marks(path: Path, kind: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    key = b'"watermarks": ['
    # A digit 0-3 with bit 2 flipped reads 4-7: the watermark rises and the JSON stays valid.
    marks_at = data.index(key) + len(key)
    low = [marks_at + i for i in range(data.index(b"]", marks_at) - marks_at)]
    low = [i for i in low if data[i] in b"0123"]
    if kind == "watermark_up" and low:
        data[rng.choice(low)] ^= 0x04
        assert json.loads(data)["watermarks"] != json.loads(path.read_bytes())["watermarks"]
    elif kind in ("flip", "watermark_up"):
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "empty":
        data.clear()
    elif kind == "truncate":
        del data[rng.randrange(len(data)) :]
    elif kind == "garbage":
        at = rng.randrange(len(data))
        data[at : at + rng.randint(1, 20)] = rng.randbytes(rng.randint(1, 20))
    elif kind == "nul_filled":
        data = bytearray(len(data))
    elif kind == "non_utf8":
        data[rng.randrange(len(data))] = rng.choice([0xFF, 0xC3, 0x80, 0xFE])
    else:
        body = json.loads(data)
        body |= {"next_version": {"lanes": 3}, "compacted": [1, 2]}
        data = bytearray(json.dumps(body).encode())
    path.write_bytes(data)


@pytest.mark.usefixtures("small_segments")
@pytest.mark.parametrize("kind", MARKS_KINDS)
@pytest.mark.parametrize("seed", range(20))
def test_a_damaged_watermarks_file_at_worst_resends(tmp_path: Path, seed: int, kind: str) -> None:
    rng = random.Random(f"marks-{seed}-{kind}")
    built = build(tmp_path, rng)
    marks = tmp_path / "acked.json"
    assert json.loads(marks.read_text())["watermarks"]
    damage_marks(marks, kind, rng)

    box = Outbox(str(tmp_path))
    delivered = drain(box)
    pending = built.pending()
    again = [n for n in delivered if n in built.acked]  # sent a second time: allowed
    assert [n for n in delivered if n not in built.acked] == pending  # never a loss
    assert len(set(delivered)) == len(delivered)
    if kind == "unknown_fields":
        assert again == []  # the watermarks were honoured

    async def finish() -> None:
        await box.commit(final=True)
        box.close()

    asyncio.run(finish())
    # The file was written afresh: the next start sends nothing again.
    assert drain(Outbox(str(tmp_path))) == []
    assert "crc" in json.loads(marks.read_text())


def legacy_record(seq: int, lane: int, topic: str, body: bytes) -> bytes:
    """Format 1, as the outbox before issue 13 wrote it: no marker, one crc over all."""
    t = topic.encode()
    fields = struct.pack("<QdBBH", seq, 1_700_000_000.0 + seq, lane, 1, len(t))
    crc = zlib.crc32(fields + t + body)
    return struct.pack("<II", len(t) + len(body), crc) + fields + t + body


@pytest.mark.parametrize("seed", range(20))
def test_segments_of_the_previous_format_are_read_and_resynchronised(
    tmp_path: Path, seed: int
) -> None:
    """A gateway updated in the field keeps its backlog, even with a flipped bit in it."""
    rng = random.Random(f"legacy-{seed}")
    rows: dict[int, tuple[int, bytes]] = {}  # seq -> (lane, payload)
    files: dict[int, list[bytes]] = {URGENT: [], INFO: []}
    for seq in range(1, 121):
        lane = URGENT if seq % 3 == 0 else INFO
        rows[seq] = (lane, payload(seq, rng))
        files[lane].append(legacy_record(seq, lane, f"ev/{lane}", rows[seq][1]))
    for lane, recs in files.items():
        half = len(recs) // 2
        (tmp_path / f"lane{lane}-{1:016d}.seg").write_bytes(b"".join(recs[:half]))
        (tmp_path / f"lane{lane}-{half + 1:016d}.seg").write_bytes(b"".join(recs[half:]))
    (tmp_path / "acked.json").write_text(json.dumps({"watermarks": [6, 10], "seq": 120}))
    # One flipped bit inside one record of one file.
    victim = rng.choice(segment_files(tmp_path))
    data = bytearray(victim.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    victim.write_bytes(data)

    reports: list[tuple[int, str]] = []
    box = Outbox(str(tmp_path), on_damaged=lambda n, p: reports.append((n, p)))
    assert reports == [(1, str(victim))]
    box.put("ev/new", payload(999, rng), lane=URGENT)
    asyncio.run(box.commit())
    assert victim.read_bytes() == bytes(data)  # never appended to, never cut
    rows[999] = (URGENT, b"")
    owed = [s for s in rows if s > (6 if rows[s][0] == URGENT else 10)]
    owed.sort(key=lambda s: (rows[s][0] != URGENT, s))
    got = drain(box)
    lost = [s for s in owed if s not in got]
    assert len(lost) <= 1  # the record the bit fell in, if it was still owed
    assert [s for s in owed if s in got] == got  # in order, nothing acknowledged again

    async def finish() -> None:
        await box.commit(final=True)
        box.close()

    asyncio.run(finish())
    assert drain(Outbox(str(tmp_path))) == []
    assert segment_files(tmp_path) == []


def test_seq_damage_does_not_confuse_the_watermark(tmp_path: Path) -> None:
    """A flipped bit in a record's seq makes it a damaged record, skipped whole: it neither
    hides the records after it (a huge seq) nor brings back acknowledged ones (a small one)."""

    async def go() -> None:
        box = Outbox(str(tmp_path))
        for n in range(10):
            box.put("ev/x", json.dumps({"n": n}).encode(), lane=INFO)
        await box.commit()
        assert acknowledge(box, 3) == [0, 1, 2]
        await box.commit(final=True)
        box.close()

    asyncio.run(go())
    [seg] = segment_files(tmp_path)
    data = bytearray(seg.read_bytes())
    starts = [s for s, _e, _n in extents(seg)]
    data[starts[5] + 16 + 7] ^= 0x80  # the top bit of record 5's seq
    data[starts[7] + 16] ^= 0x01  # the low bit of record 7's seq
    seg.write_bytes(data)
    reports: list[tuple[int, str]] = []
    box = Outbox(str(tmp_path), on_damaged=lambda n, p: reports.append((n, p)))
    assert drain(box) == [3, 4, 6, 8, 9]
    assert reports == [(2, str(seg))]
    assert box.seq == 10  # new messages do not collide with what is on disk
    box.close()


def test_a_segment_whose_first_marker_is_gone_is_still_read_as_format_2(tmp_path: Path) -> None:
    """A format-2 segment whose first record's marker is gone is still read as format 2."""

    async def go() -> None:
        box = Outbox(str(tmp_path))
        for n in range(5):
            box.put("ev/x", json.dumps({"n": n}).encode(), lane=INFO)
        await box.commit(final=True)
        box.close()

    asyncio.run(go())
    [seg] = segment_files(tmp_path)
    seg.write_bytes(b"\x00\x00\x00\x00" + seg.read_bytes()[4:])
    reports: list[tuple[int, str]] = []
    assert drain(Outbox(str(tmp_path), on_damaged=lambda n, p: reports.append((n, p)))) == [
        1,
        2,
        3,
        4,
    ]
    assert reports == [(1, str(seg))]
    assert os.path.getsize(seg) > 0
