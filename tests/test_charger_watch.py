"""The charger watch (issue 13, defect 14 / build 7): with one port cut and still hot, the
summary block names only that port, so a second port crossing 60 °C is seen only by reading
the port blocks. These tests run the modbus driver and the real overheat rule against the EBC
emulator over an RTU pty line and over TCP, with ``slow_seconds`` far out of reach, so the
periodic full read cannot be what cuts the second port."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from drivers.modbus import readings as rd
from firmware_stubs.ebc_model import F_OVERTEMP
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd.model import Action, alarm_id
from rules.charger import OverheatRule
from tests.charger_harness import RulesLoop, on_emulator, running

FAST_SECONDS = 0.4
SETTINGS = {"fast_seconds": FAST_SECONDS, "slow_seconds": 120.0}
# The bound: a watch period, the read itself (a 12-port block is ~0.23 s at 9600 baud), the cut.
SECOND_PORT_BOUND = 2 * FAST_SECONDS + 0.3


def port_block_reads(emu: EbcEmulator, unit: int, since: float, until: float) -> int:
    """Reads of port blocks (input registers 16..255) the pile received in a window."""
    return sum(
        1
        for t, u, pdu in emu.trace
        if u == unit and since <= t <= until and pdu[0] == 4
        if 16 <= int.from_bytes(pdu[1:3], "big") < 256
    )


async def window(emu: EbcEmulator, unit: int, seconds: float) -> int:
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return port_block_reads(emu, unit, start, time.monotonic())


async def until(pred: Any, timeout: float) -> float:
    """Wait for ``pred()``; return how long it took."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
def test_second_port_crossing_behind_a_hot_cut_port_is_cut_within_the_fast_bound(
    transport: str,
) -> None:
    hot, cool = Pile(unit=1, ports_n=12), Pile(unit=2, ports_n=12)
    for pile in (hot, cool):
        for n in (2, 3, 5, 7):
            pile.plug(n)  # 240 W each ...
        pile.advance(1200)  # ... and warmed to a steady 39 °C: the summary holds still

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1, "pile-2": 2}) as driver:
            await loop.wait_for("charger.port_started", count=8)
            await asyncio.sleep(0.5)  # the start-up reads are over
            quiet = await window(emu, 1, 2.0)  # before anything is hot: no watch reads
            hot.hold_temperature(3, 72.0)  # port 3 overheats and stays hot after its cut
            [first] = await loop.wait_for("charger.port_cut")
            await asyncio.sleep(0.5)
            watched = await window(emu, 1, 2.0)
            watched_piles = driver.stats()["watched_piles"]  # what the metrics endpoint gets
            neighbour = port_block_reads(emu, 2, 0.0, time.monotonic())
            hot.heat_port(7, 62.0)  # under port 3's 72 °C: the summary still names port 3
            took = await until(lambda: not hot.port(7).relay, SECOND_PORT_BOUND)
            [_, second] = await loop.wait_for("charger.port_cut", count=2)
            summary = hot.input_registers(256, 2)
            hot.cool_port(3)
            hot.cool_port(7)
            # The next summary shows it and ends the watch; then one more read (the change).
            await until(lambda: driver.stats()["watched_piles"] == 0, 3 * FAST_SECONDS + 2.0)
            await asyncio.sleep(3 * FAST_SECONDS)
            after = await window(emu, 1, 2.0)
            unwatched_piles = driver.stats()["watched_piles"]
        assert (first.data["ports"], second.data["ports"]) == ([3], [7])
        assert second.data["done"] == "relay_opened" and "port 7" in second.data["reason"]
        assert summary == [720, 3]  # port 7's crossing never showed in the summary
        assert took < SECOND_PORT_BOUND
        assert [p.number for p in hot.ports if not p.relay] == [3, 7]
        assert all(p.relay for p in cool.ports)
        overheat = loop.book.alarms[alarm_id("pile-1", "charger.overheat")]
        assert sorted(overheat.parts) == ["3", "7"]  # one alarm for the pile, both ports in it
        # The watch's cost on the line: every fast period while port 3 is hot, nothing before
        # it or after the pile cooled, and nothing for the cool pile beside it.
        assert quiet == 0 and after == 0
        assert (watched_piles, unwatched_piles) == (1, 0)
        assert watched >= 2.0 / FAST_SECONDS - 1
        assert neighbour <= 2  # its start-up read (and at most one refresh)

    on_emulator(body, [hot, cool], transport, SETTINGS)


def test_a_port_the_pile_tripped_on_heat_keeps_its_pile_watched_until_cleared() -> None:
    pile = Pile(unit=1, ports_n=8)
    pile.plug(4)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1}):
            await loop.wait_for("charger.port_started")
            pile.inject_fault(4, F_OVERTEMP)  # its own 85 °C trip; the socket has cooled since
            await loop.wait_for("charger.port_fault")
            await asyncio.sleep(0.5)
            tripped = await window(emu, 1, 2.0)
            pile.handle(bytes([6, 0, 3, 0x5A, 0x5A]))  # a person clears the latched fault
            await asyncio.sleep(3 * FAST_SECONDS)
            cleared = await window(emu, 1, 2.0)
        assert pile.port(4).temp_c < 50
        assert [a.type for a in loop.alarms] == ["charger.overheat"]
        assert tripped >= 2.0 / FAST_SECONDS - 1
        assert cleared == 0

    on_emulator(body, [pile], "tcp", SETTINGS)


def test_a_hot_day_with_every_pile_watched_still_leaves_the_summaries_their_round() -> None:
    # 8 × 12-port piles at 9600 baud: the summaries alone fill a 0.3 s period. Were every
    # watched pile's 96 registers read each round ahead of them, a round would take ~2.4 s;
    # with the summaries keeping half the line, two rounds' worth of them plus one sweep
    # (0.23 s) is ~0.85 s.
    piles = [Pile(unit=u, ports_n=12) for u in range(1, 9)]
    for pile in piles:
        pile.plug(1)
        pile.hold_temperature(5, 55.0)  # warm, not hot enough to cut: every pile watched

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {f"pile-{p.unit}": p.unit for p in piles}):
            await loop.wait_for("charger.port_started", count=8, timeout=10)
            await asyncio.sleep(2.0)
            start = time.monotonic()
            await asyncio.sleep(6.0)
            end = time.monotonic()
        for pile in piles:
            reads = [
                t
                for t, u, pdu in emu.trace
                if u == pile.unit and start <= t <= end and pdu[:3] == b"\x04\x01\x00"
            ]
            assert max(b - a for a, b in itertools.pairwise(reads)) < 1.2, pile.unit
            # Watched all the same, in turn: half the line is ~13 of these reads in 6 s.
            assert port_block_reads(emu, pile.unit, start, end) >= 1
        assert loop.of_type("charger.port_cut") == []
        assert emu.stats.gap_violations == 0

    on_emulator(body, piles, "rtu", {"fast_seconds": 0.3, "slow_seconds": 120.0})


def port_block_spans(emu: EbcEmulator, unit: int, since: float, until: float) -> set[range]:
    """The port numbers each port-block read covered in a window."""
    out = set()
    for t, u, pdu in emu.trace:
        addr, count = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
        if u == unit and since <= t <= until and pdu[0] == 4 and 16 <= addr < 256:
            out.add(range((addr - 16) // 8 + 1, (addr + count - 16 - 1) // 8 + 2))
    return out


async def spans_in(emu: EbcEmulator, unit: int, seconds: float) -> set[range]:
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return port_block_spans(emu, unit, start, time.monotonic())


def test_the_watch_reads_only_ports_whose_relay_may_be_closed() -> None:
    # The gateway has switched ports 9-12 off; port 3 overheats and stays hot after its cut.
    # The watch then reads ports 1-8 only (port 3's block rides along between 2 and 4). A port
    # a person switches back on, and one the pile switches on by itself, are read again from
    # the next rounds, and a crossing there is cut within the same bound as before.
    pile = Pile(unit=1, ports_n=12)
    for n in (2, 3, 5, 7, 10, 12):
        pile.plug(n)
    pile.advance(1200)

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        loop = RulesLoop([OverheatRule({})])
        async with running(loop, bus, {"pile-1": 1}) as driver:
            await loop.wait_for("charger.port_started", count=6)
            for n in (9, 10, 11, 12):
                await driver.execute(Action("pile-1", "port_off", {"port": n}))
            pile.hold_temperature(3, 72.0)
            await loop.wait_for("charger.port_cut", count=5)
            # The refresh after the cut reads port 3 as disabled, queued behind the summaries
            # and the watch on this full line: wait for the sweeps alone (or fail here).
            for _ in range(10):
                if await spans_in(emu, 1, 0.5) == {range(1, 9)}:
                    break
            cut_off = await spans_in(emu, 1, 2.0)
            await driver.execute(Action("pile-1", "port_on", {"port": 10}))  # a person
            await asyncio.sleep(1.0)
            switched_on = await spans_in(emu, 1, 2.0)
            pile.heat_port(10, 62.0)
            took10 = await until(lambda: not pile.port(10).relay, SECOND_PORT_BOUND)
            pile._set_relay(12, True)  # the pile itself (a local switch, a firmware of its own)
            await asyncio.sleep(1.0)
            pile.heat_port(12, 62.0)
            took12 = await until(lambda: not pile.port(12).relay, SECOND_PORT_BOUND)
            await loop.wait_for("charger.port_cut", count=7)
            summary = pile.input_registers(256, 2)
        assert cut_off == {range(1, 9)}  # every sweep: ports 1-8 in one read, 9-12 never
        assert switched_on == {range(1, 11)}
        assert summary == [720, 3]  # neither crossing showed in the summary
        assert took10 < SECOND_PORT_BOUND and took12 < SECOND_PORT_BOUND
        cuts = [e.data["ports"] for e in loop.of_type("charger.port_cut")]
        assert cuts[-2:] == [[10], [12]]

    on_emulator(body, [pile], "rtu", SETTINGS)


def reading(n: int, state: str) -> dict[str, Any]:
    return {"port": n, "state": state}


@pytest.mark.parametrize(
    ("relay", "state", "charging", "read"),
    [
        (False, "disabled", [], False),  # cut by the gateway: nothing left to cut
        (False, "fault", [], False),  # the pile's own trip opened it
        (True, "charging", [], True),
        (True, "idle", [], True),  # powered, nothing plugged yet: a cut can still open it
        (True, "fault", [], True),  # a welded relay reads "fault" with its coil closed
        (None, "disabled", [], True),  # relays never read
        (False, None, [], True),  # port block never read
        (False, "charging", [], True),  # the block is newer than the coil read
        (False, "idle", [], True),  # idle means a closed relay by the datasheet
        (False, "disabled", [2], True),  # drawing current now, by the summary
    ],
)
def test_watch_ports_leaves_out_only_ports_known_to_be_open(
    relay: bool | None, state: str | None, charging: list[int], read: bool
) -> None:
    relays = [] if relay is None else [True, relay, True]
    ports = {1: reading(1, "charging"), 3: reading(3, "idle")}
    if state is not None:
        ports[2] = reading(2, state)
    summ = {"charging": charging}
    assert rd.watch_ports(3, relays, ports, summ) == ([1, 2, 3] if read else [1, 3])
    assert rd.watch_ports(3, relays, ports, None) == (
        [1, 2, 3] if read and not charging else [1, 3]
    )


def port(n: int, temp: float | None, fault: str = "none") -> dict[str, Any]:
    return {"port": n, "temperature_c": temp, "fault": fault}


def summary(hottest: float | None, port: int) -> dict[str, Any]:
    return {"hottest_c": hottest, "hottest_port": port}


@pytest.mark.parametrize(
    ("watching", "summ", "ports", "watched"),
    [
        (False, summary(49.9, 2), [port(2, 49.9)], False),
        (False, summary(50.0, 2), [port(2, 45.0)], True),  # the summary is fresher
        (False, summary(40.0, 2), [port(5, 51.0)], True),  # a port block read at 51 °C
        (True, summary(48.5, 2), [port(2, 48.5)], True),  # hysteresis: still watched ...
        (True, summary(47.9, 2), [port(2, 47.9)], False),  # ... until 2 °C under
        (False, summary(30.0, 2), [port(6, 30.0, "over_temperature")], True),
        (False, summary(30.0, 2), [port(6, 30.0, "over_power")], False),
        (False, summary(None, 3), [port(3, None)], True),  # a broken sensor hides the rest
        (False, None, [], False),
    ],
)
def test_watch_is_decided_from_readings(
    watching: bool, summ: dict[str, Any] | None, ports: list[dict[str, Any]], watched: bool
) -> None:
    assert (rd.watch_cause(watching, summ, ports, 50.0) is not None) == watched


def test_a_port_the_watch_does_not_read_counts_by_the_summary_only() -> None:
    # Port 3 was cut at 65 °C and has cooled since: its old block must not keep the pile
    # watched (the summary sees it every round); its latched trip still does.
    cooled = [port(1, 30.0), port(3, 65.0)]
    assert rd.watch_cause(True, summary(31.0, 1), cooled, 50.0, read={1, 2}) is None
    assert rd.watch_cause(True, summary(31.0, 1), cooled, 50.0) is not None
    assert rd.watch_cause(True, summary(64.0, 3), cooled, 50.0, read={1, 2}) is not None
    tripped = [port(1, 30.0), port(3, 40.0, "over_temperature")]
    assert rd.watch_cause(False, summary(40.0, 3), tripped, 50.0, read={1, 2}) is not None
