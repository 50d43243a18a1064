"""Overheat reply → relay-off request (issue 4): how long the gateway takes between receiving
the reading that shows a socket at 60 °C and sending the write that opens its relay.

Measured from outside, on the pile emulator's own request trace, with the real daemon in the
path (driver decode → rules → actuator → line scheduler → Modbus TCP on loopback): the time
between the read request whose reply carried the hot reading (the emulator answers a TCP
request at once) and the relay write that follows for that pile. Each trial heats a fresh
(pile, port), since a cut port stays off until a person turns it on.

Two series, each on a fresh emulator and daemon: in the first the bad contact is mended once
the port is cut (the pile cools, so the charger watch lets it go); in the second every cut port
stays at 66 °C, so one pile after another comes under the watch, whose reads keep the line
busy: a cut then usually waits for the transaction already on the wire (the line serves one
at a time, and a safety write goes next, not over it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, row, start_daemon, write_site
from firmware_stubs.broker import Broker
from firmware_stubs.ebc_model import Pile
from firmware_stubs.ebc_pile import EbcEmulator

PILES, PORTS = 10, 12


def run(quick: bool) -> list[dict[str, Any]]:
    trials = 20 if quick else 100
    rows = []
    for held, what in (
        (False, "each cut port mended"),
        (True, "cut ports held hot, piles watched"),
    ):
        latencies = series(trials, held)
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        n = len(latencies)
        rows += [
            row(f"overheat reading → relay-off request, p50 ({n} trials, TCP, {what})", p50,
                "ms", target="", ok=None),
            row(f"overheat reading → relay-off request, p99 ({n} trials, TCP, {what})", p99,
                "ms", target="≤ 5 ms" if not held else "", ok=p99 <= 5.0 if not held else None),
        ]  # fmt: skip
    return rows


def series(trials: int, held: bool) -> list[float]:
    """Latencies (s) of ``trials`` cuts; ``held``: each cut port stays hot afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    call = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(15)  # noqa: E731
    piles = [Pile(unit=u, ports_n=PORTS) for u in range(1, PILES + 1)]
    emu = EbcEmulator(piles)

    async def up() -> int:
        await emu.__aenter__()
        return await emu.serve_tcp()

    port = call(up())
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp)
        broker.start()
        devices = "".join(
            f'[[devices]]\nid = "pile-{u}"\nkind = "charger"\nbus = "lan"\nunit = {u}\n\n'
            for u in range(1, PILES + 1)
        )
        body = (
            f'[[buses]]\nname = "lan"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {port}\n'
            f"fast_seconds = 0.2\nslow_seconds = 5\n\n{devices}"
        )
        cfg, _key = write_site(tmp, broker.url, body)
        proc, _ = start_daemon(cfg, tmp / "gatewayd.log")
        try:
            time.sleep(3.0)  # every pile identified and polled
            cases = [(u, p) for p in range(1, PORTS + 1) for u in range(1, PILES + 1)][:trials]
            for unit, number in cases:
                pile = piles[unit - 1]
                mark = time.monotonic()

                async def heat(pile: Pile = pile, number: int = number) -> None:
                    pile.heat_port(number, 66.0)

                call(heat())
                deadline = time.monotonic() + 5
                while pile.ports[number - 1].relay and time.monotonic() < deadline:
                    time.sleep(0.005)
                trace = [t for t in list(emu.trace) if t[0] >= mark and t[1] == unit]
                write = next((t for t in trace if t[2][0] in (5, 15)), None)
                if write is None:
                    raise RuntimeError(f"no relay write for pile {unit} port {number}")
                read = max(
                    (t for t in trace if t[2][0] == 4 and t[0] < write[0]), key=lambda t: t[0]
                )
                latencies.append(write[0] - read[0])
                if not held:
                    call(mend(pile, number))
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(10)
            broker.stop()
            call(emu.__aexit__(None, None, None))
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
    return latencies


async def mend(pile: Pile, number: int) -> None:
    pile.cool_port(number)


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(json.dumps(r, ensure_ascii=False))
