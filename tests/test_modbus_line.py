"""The line scheduler and a cut: a rule judging a reply cuts before the polls already queued
behind that reply (issue 13/15: the cut latency), on a real Modbus TCP connection and RTU pty
line to the pile emulator, read from the emulator's own request trace."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.modbus.line import Line, Priority
from drivers.modbus.transport import Link, LinkConfig, PymodbusLink
from firmware_stubs.ebc_pile import EbcEmulator, Pile
from tests.charger_harness import on_emulator

READ, WRITE_COIL = 4, 5


def _config(bus: dict[str, Any]) -> LinkConfig:
    return LinkConfig(
        port=bus.get("port"),
        baudrate=bus.get("baudrate", 9600),
        parity="N",
        host=bus.get("host"),
        tcp_port=bus.get("tcp_port", 502),
    )


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_a_cut_decided_on_a_reply_goes_before_the_polls_queued_behind_it(transport: str) -> None:
    piles = [Pile(unit=u, ports_n=4) for u in (1, 2, 3)]

    async def body(emu: EbcEmulator, bus: dict[str, Any]) -> None:
        link = PymodbusLink(_config(bus))
        line = Line(link)
        worker = asyncio.create_task(line.run())

        def read(unit: int) -> Any:
            return lambda lk: lk.read_registers(unit, 256, 6, 1.0)

        async def cut(lk: Link) -> None:
            await lk.write_coils(1, 0, [False], 1.0)

        async def poll_and_judge() -> None:
            await line.call(Priority.FAST, read(1))
            # What a rule does with a hot reading: the cut is a task of its own, spawned
            # while the reply is judged (gatewayd.linkage), not awaited here.
            cuts.append(asyncio.create_task(line.call(Priority.SAFETY, cut)))

        try:
            cuts: list[asyncio.Task[None]] = []
            start = len(emu.trace)
            first = asyncio.create_task(poll_and_judge())
            await asyncio.sleep(0)  # pile 1's summary takes the line
            polls = [asyncio.create_task(line.call(Priority.FAST, read(u))) for u in (2, 3)]
            await first
            await asyncio.gather(*polls, *cuts)
            order = [(unit, pdu[0]) for _, unit, pdu in list(emu.trace)[start:]]
        finally:
            worker.cancel()
            link.close()
        assert order == [(1, READ), (1, WRITE_COIL), (2, READ), (3, READ)]
        assert piles[0].ports[0].relay is False

    on_emulator(body, piles, transport, {})
