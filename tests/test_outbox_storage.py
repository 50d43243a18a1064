"""Nothing on (or missing from) the disk stops the outbox from starting (issue 13, defect 8).

A data directory gone read-only, a directory that cannot be created, odd files where segments
or the watermarks file should be, a disk filling up mid-write: the outbox constructs, keeps
what it is given in memory, delivers it to a real mosquitto through the real uplink, says
``disk_error``, and writes once it can. The read-only card is a real read-only mount (a tmpfs
remounted ``ro``): root, as the tests run in CI, ignores mode bits, and a mount fails every
write the way a card that has gone read-only does. Run as another user, ``chmod 0555`` gives
the same refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatewayd import config as config_mod
from gatewayd.uplink.lanes import INFO, URGENT
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.publisher import BareHouse, Publisher
from gatewayd.uplink.segments import read_segment
from gatewayd.uplink.topics import Topics
from tests.harness import Broker, Probe
from tests.test_outbox_damage import acknowledge


def put(box: Outbox, numbers: range) -> None:
    for n in numbers:
        lane = URGENT if n % 2 == 0 else INFO
        box.put(f"ev/{n}", json.dumps({"n": n}).encode(), lane=lane)


def owed(numbers: list[int]) -> list[int]:
    """The order the broker gets a backlog in: urgent (even here) first, each lane in order."""
    return sorted(numbers, key=lambda n: (n % 2, n))


def drain(box: Outbox) -> list[int]:
    out, mid = [], 0
    while (msg := box.next()) is not None:
        mid += 1
        box.sent(msg, mid)
        box.acked(mid)
        out.append(json.loads(msg.payload)["n"])
    return out


async def deliver(box: Outbox, broker: Broker, until: Callable[[], bool]) -> None:
    """Connect the real uplink to the broker and publish from ``box`` until ``until()``."""
    cfg = config_mod.parse({"gateway": {"id": "gw-test"}, "mqtt": {"url": broker.url}})
    pub = Publisher(Topics("t/gw-test"), box, time.time(), "", BareHouse())
    link = MqttLink(
        cfg,
        will=("t/gw-test/status", b"{}"),
        on_message=lambda *_: None,
        on_connected=pub.on_connected,
        on_acked=pub.on_acked,
        on_disconnected=pub.on_disconnected,
        subscriptions=(),
    )
    pub.bind(link, list, lambda: False)
    async with link:
        for _ in range(1000):
            if until():
                break
            await asyncio.sleep(0.01)
        assert until(), "not delivered in time"


def received(probe: Probe) -> list[int]:
    return [m.json()["n"] for m in probe.on("ev/+")]


@contextlib.contextmanager
def card(where: Path) -> Iterator[Callable[[bool], None]]:
    """A directory that can be made read-only and writable again: a tmpfs remounted as root,
    mode bits otherwise. Yields ``writable(flag)``."""
    where.mkdir(parents=True)
    if os.geteuid() != 0:

        def modes(ok: bool) -> None:
            for d, _dirs, files in os.walk(where):
                Path(d).chmod(0o750 if ok else 0o555)
                for f in files:
                    Path(d, f).chmod(0o600 if ok else 0o400)

        yield modes
        modes(True)
        return

    def mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")

    mount("-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", str(where))
    try:
        yield lambda ok: mount("-o", "remount," + ("rw" if ok else "ro"), str(where))
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def test_read_only_card_outbox_runs_from_memory_delivers_and_writes_when_it_can(
    tmp_path: Path, broker: Broker, probe: Probe
) -> None:
    data = tmp_path / "data"
    with card(data) as writable:
        directory = str(data / "outbox")

        async def before() -> None:  # a previous run left six messages on the card
            box = Outbox(directory)
            put(box, range(6))
            await box.commit(final=True)
            box.close()

        asyncio.run(before())
        writable(False)
        files = sorted(os.listdir(directory))

        async def read_only() -> Outbox:
            box = Outbox(directory)
            assert box.disk_error is not None
            assert box.depth == 6  # read back from the read-only card
            put(box, range(6, 10))
            await box.commit()
            assert box.disk_error is not None
            assert sorted(os.listdir(directory)) == files  # nothing could be written
            await deliver(box, broker, lambda: len(received(probe)) >= 10)
            assert box.depth == 0
            broker.stop()  # the link is gone too: these wait in memory only
            put(box, range(10, 13))
            for _ in range(3):
                await box.commit()
            assert box.disk_error is not None
            assert box.depth == 3
            writable(True)
            await box.commit()  # the next window writes them
            assert box.disk_error is None
            return box

        box = asyncio.run(read_only())
        assert received(probe) == owed(list(range(10)))
        stored = [
            json.loads(r.payload)["n"]
            for name in sorted(os.listdir(directory))
            if name.endswith(".seg")
            for r, _ in read_segment(os.path.join(directory, name)).records
        ]
        assert sorted(n for n in stored if n >= 10) == [10, 11, 12]

        async def stop() -> None:
            await box.commit(final=True)  # acknowledgements of 0-9 recorded, their files gone
            box.close()

        asyncio.run(stop())
        assert drain(Outbox(directory)) == owed([10, 11, 12])


def make_fifo(p: Path) -> None:
    os.mkfifo(p)


def make_socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


ODD_SEGMENTS: dict[str, Callable[[Path], None]] = {
    "a directory": lambda p: p.mkdir(),
    "a FIFO": make_fifo,
    "a socket": make_socket,
    "a link to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
    "a dangling link": lambda p: p.symlink_to(p.parent / "nowhere"),
}


@pytest.mark.parametrize("what", list(ODD_SEGMENTS))
def test_something_that_is_not_a_segment_file_under_a_segment_name(
    tmp_path: Path, broker: Broker, probe: Probe, what: str
) -> None:
    async def before() -> None:
        box = Outbox(str(tmp_path))
        put(box, range(8))
        await box.commit(final=True)
        box.close()

    asyncio.run(before())
    odd = tmp_path / "lane1-0000000000000009.seg"  # after every real one
    ODD_SEGMENTS[what](odd)
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / "lane1-draft.seg").write_bytes(b"not ours either")
    (tmp_path / "lane7-0000000000000001.seg").write_bytes(b"no such lane")
    reports: list[tuple[int, str]] = []

    async def run() -> None:
        box = Outbox(str(tmp_path), on_damaged=lambda n, p: reports.append((n, p)))
        assert reports == [(1, str(odd))]
        assert box.disk_error is None
        put(box, range(8, 12))  # new segments take names after the odd one's
        await box.commit()
        assert box.disk_error is None
        await deliver(box, broker, lambda: len(received(probe)) >= 12)
        await box.commit(final=True)
        box.close()

    asyncio.run(run())
    assert received(probe) == owed(list(range(12)))
    assert os.path.lexists(odd)  # what it could not read it leaves alone
    assert (tmp_path / "notes.txt").read_text() == "not ours"
    assert drain(Outbox(str(tmp_path))) == []


def a_file(t: Path) -> Path:
    (t / "outbox").write_text("x")
    return t / "outbox"


def under_a_file(t: Path) -> Path:
    (t / "data").write_text("x")
    return t / "data" / "outbox"


def a_dangling_link(t: Path) -> Path:
    (t / "outbox").symlink_to(t / "gone")
    return t / "outbox"


UNUSABLE_DIRS = {
    "the directory is a file": a_file,
    "its parent is a file": under_a_file,
    "a dangling link": a_dangling_link,
}


@pytest.mark.parametrize("what", list(UNUSABLE_DIRS))
def test_a_directory_that_cannot_be_made_runs_from_memory(
    tmp_path: Path, broker: Broker, probe: Probe, what: str
) -> None:
    directory = UNUSABLE_DIRS[what](tmp_path)

    async def run() -> None:
        box = Outbox(str(directory))
        assert box.disk_error is not None
        put(box, range(5))
        await box.commit()
        await box.commit()
        assert box.disk_error is not None
        assert box.depth == 5
        await deliver(box, broker, lambda: len(received(probe)) >= 5)
        box.close()

    asyncio.run(run())
    assert received(probe) == owed(list(range(5)))


ODD_MARKS: dict[str, Callable[[Path], None]] = {
    "a directory": lambda p: p.mkdir(),
    "a FIFO": make_fifo,
    "a link to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
    "a file far too big": lambda p: p.write_bytes(b" " * (1 << 17)),
}


@pytest.mark.parametrize("what", list(ODD_MARKS))
def test_something_odd_where_the_watermarks_file_was(tmp_path: Path, what: str) -> None:
    async def before() -> None:
        box = Outbox(str(tmp_path))
        put(box, range(6))
        await box.commit(final=True)
        assert acknowledge(box, 2) == [0, 2]
        await box.commit(final=True)
        box.close()

    asyncio.run(before())
    marks = tmp_path / "acked.json"
    marks.unlink()
    ODD_MARKS[what](marks)
    box = Outbox(str(tmp_path))
    assert drain(box) == owed(list(range(6)))  # starts, and sends the acknowledged two again
    box.close()


def test_a_disk_that_fills_mid_write_leaves_no_torn_record_and_no_duplicate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with card(data):
        if os.geteuid() != 0:
            pytest.skip("needs a small mount of its own")
        filler = data / "filler"
        directory = str(data / "outbox")

        async def run() -> Outbox:
            box = Outbox(directory)
            put(box, range(3))
            await box.commit()
            free = os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
            filler.write_bytes(b"\0" * (free - 6000))  # room for about 40 of the next
            big = "y" * 120
            for n in range(3, 303):
                box.put(f"ev/{n}", json.dumps({"n": n, "pad": big}).encode(), lane=INFO)
            await box.commit()
            assert box.disk_error is not None  # ENOSPC: the batch stays in memory
            for name in os.listdir(directory):  # and no half of it is left on the card
                if name.endswith(".seg"):
                    assert read_segment(os.path.join(directory, name)).damaged == 0
            filler.unlink()
            await box.commit()
            assert box.disk_error is None
            box.close()  # killed: nothing acknowledged
            return box

        asyncio.run(run())
        reports: list[tuple[int, str]] = []
        again = Outbox(directory, on_damaged=lambda n, p: reports.append((n, p)))
        assert drain(again) == [0, 2, 1, *range(3, 303)]  # each once, in order
        assert reports == []


def test_a_segment_that_will_not_go_does_not_hold_up_new_writes(tmp_path: Path) -> None:
    async def run() -> None:
        box = Outbox(str(tmp_path))
        put(box, range(3))
        await box.commit()
        assert drain(box) == [0, 2, 1]  # all acknowledged: the segments are due to go
        [stuck] = tmp_path.glob("lane1-*.seg")
        stuck.unlink()
        (stuck / "x").mkdir(parents=True)  # in its place, something unlink refuses
        put(box, range(3, 6))
        await box.commit()
        assert box.disk_error is not None and str(stuck) in box.disk_error
        written = {
            json.loads(r.payload)["n"]
            for p in tmp_path.glob("lane*.seg")
            if p != stuck
            for r, _ in read_segment(str(p)).records
        }
        assert written == {3, 4, 5}
        (stuck / "x").rmdir()
        stuck.rmdir()
        await box.commit()
        assert box.disk_error is None
        box.close()

    asyncio.run(run())
    assert drain(Outbox(str(tmp_path))) == [4, 3, 5]
