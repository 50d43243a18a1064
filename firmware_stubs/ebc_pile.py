"""EBC charging pile emulator: piles on Modbus TCP and on an emulated RS-485 line (a pty).

Why not pymodbus's server: the semantics this emulator exists for sit outside its datastore
hooks — exception 04 when closing a faulted port, side effects on writes (a relay that opens
ends a session, the command register), broadcasts executed without a reply, a welded relay that
acknowledges and stays closed, garbled and missing replies, several slaves sharing one line,
and line timing at the configured baud rate. Framing Modbus RTU/TCP is ~100 lines
(``modbus_frames``); fighting a server framework for each of those would be more.

The RTU line is honest about time: a reply is written to the pty only when it would have
finished arriving on a real line (request bytes + 3.5-character gap + turnaround + reply
bytes, 10 bits a byte at 8N1), and a request sent before the line went quiet is counted as a
gap violation. So a master's bus scheduling can be measured against it.

    python -m firmware_stubs.ebc_pile --tcp 127.0.0.1:5020 --unit 1 --ports 12
    python -m firmware_stubs.ebc_pile --rtu-link /tmp/rs485 --units 1-4 --baud 9600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import tty
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from firmware_stubs.ebc_model import Battery, ModbusException, Pile
from firmware_stubs.modbus_frames import (
    char_seconds,
    mbap,
    parse_mbap,
    rtu_frame,
    split_rtu_requests,
    t35,
)

__all__ = ["Battery", "EbcEmulator", "LineStats", "ModbusException", "Pile"]

log = logging.getLogger("ebc_pile")


@dataclass
class LineStats:
    requests: int = 0
    replies: int = 0
    broadcasts: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    garbage_bytes: int = 0
    gap_violations: int = 0
    busy_seconds: float = 0.0  # wire time of every frame, plus the gaps the protocol demands


class EbcEmulator:
    """Piles by slave address, their physics clock, and the transports that reach them.

    Use as an async context manager; ``speed`` runs the simulated clock faster than real time.
    """

    def __init__(
        self,
        piles: Iterable[Pile],
        *,
        speed: float = 1.0,
        tick_seconds: float = 0.1,
        baud: int = 9600,
        parity: str = "N",
        turnaround_seconds: float = 0.005,
    ) -> None:
        self.piles = {p.unit: p for p in piles}
        self.speed = speed
        self.tick_seconds = tick_seconds
        self.baud = baud
        self.parity = parity
        self.turnaround = turnaround_seconds
        self.stats = LineStats()
        self.tcp_port = 0
        self.slave_path = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._fds: list[int] = []
        self._line_free_at = 0.0
        self._rx = b""
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        # (monotonic time, unit, request PDU) of every well-formed request: tests measure
        # polling intervals and count requests from here.
        self.trace: deque[tuple[float, int, bytes]] = deque(maxlen=100_000)
        # (request end, reply end or None, unit, request PDU) on the modelled RTU wire: what a
        # pile saw and when (a relay opens once its request has arrived), for benchmarks.
        self.wire_log: deque[tuple[float, float | None, int, bytes]] = deque(maxlen=100_000)

    def pile(self, unit: int) -> Pile:
        return self.piles[unit]

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> EbcEmulator:
        self._tasks.append(asyncio.create_task(self._physics(), name="ebc-physics"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._conns.values():
            writer.close()  # the handler then reads EOF and ends by itself
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()
        if self._server is not None:
            # Connections still open would make wait_closed wait for the client to go.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _physics(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_seconds)
            now = time.monotonic()
            for pile in self.piles.values():
                pile.advance((now - last) * self.speed)
            last = now

    # -- Modbus TCP -------------------------------------------------------------------------

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for Modbus TCP; unit id = slave address. Returns the bound port."""
        self._server = await asyncio.start_server(self._tcp_client, host, port)
        self.tcp_port = self._server.sockets[0].getsockname()[1]
        return self.tcp_port

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _pid, length, unit = parse_mbap(header)
                pdu = await reader.readexactly(length)
                self.stats.requests += 1
                self.stats.bytes_in += 7 + length
                reply = self._execute(unit, pdu)
                if reply is None:
                    continue
                frame = mbap(tid, self.piles[unit].answer_as or unit, reply)
                if self.piles[unit].garble:
                    frame = frame[:7] + bytes([0x7F]) + frame[8:]  # a function code nobody sent
                writer.write(frame)
                self.stats.replies += 1
                self.stats.bytes_out += len(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()

    # -- Modbus RTU over a pty --------------------------------------------------------------

    def open_rtu(self) -> str:
        """Create the emulated RS-485 line; returns the path a master opens (the pty slave)."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._fds += [master, slave]  # keep the slave open so the master never reads EIO
        self.slave_path = os.ttyname(slave)
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._rtu_readable, master)
        self._tasks.append(asyncio.create_task(self._rtu_serve(master), name="ebc-rtu"))
        return self.slave_path

    def _rtu_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return
        self._queue.put_nowait((time.monotonic(), data))

    def char_time(self) -> float:
        return char_seconds(self.baud, self.parity)

    async def _rtu_serve(self, fd: int) -> None:
        gap = t35(self.baud, self.parity)
        while True:
            arrived, data = await self._queue.get()
            self._rx += data
            self.stats.bytes_in += len(data)
            frames, garbage, self._rx = split_rtu_requests(self._rx)
            self.stats.garbage_bytes += sum(len(g) for g in garbage)
            for frame in frames:
                # The master's write lands in one go; on a wire it starts now and ends later.
                if arrived < self._line_free_at + gap:
                    self.stats.gap_violations += 1
                start = max(arrived, self._line_free_at)
                request_end = start + len(frame) * self.char_time()
                self.stats.requests += 1
                unit = frame[0]
                reply = self._execute(unit, frame[1:-2])
                if reply is None:
                    self.wire_log.append((request_end, None, unit, frame[1:-2]))
                    self._line_free_at = request_end + gap
                    self.stats.busy_seconds += request_end + gap - start
                    continue
                out = rtu_frame(self.piles[unit].answer_as or unit, reply)
                if self.piles[unit].garble:
                    out = out[:-1] + bytes([out[-1] ^ 0xFF])  # a CRC that fails
                done = request_end + gap + self.turnaround + len(out) * self.char_time()
                self.wire_log.append((request_end, done, unit, frame[1:-2]))
                self._line_free_at = done
                self.stats.busy_seconds += done + gap - start
                await asyncio.sleep(max(0.0, done - time.monotonic()))
                os.write(fd, out)
                self.stats.replies += 1
                self.stats.bytes_out += len(out)

    # -- both -------------------------------------------------------------------------------

    def _execute(self, unit: int, pdu: bytes) -> bytes | None:
        """Run a request on its pile (every pile for a broadcast); None when nobody replies."""
        self.trace.append((time.monotonic(), unit, pdu))
        if unit == 0:
            self.stats.broadcasts += 1
            for pile in self.piles.values():
                if not pile.ignore_broadcast and not pile.silent:
                    pile.handle(pdu, broadcast=True)
            return None
        addressed = self.piles.get(unit)
        if addressed is None or addressed.silent:
            return None
        return addressed.handle(pdu)


def _units(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


async def _main(args: argparse.Namespace) -> None:
    units = _units(args.units) if args.units else [args.unit]
    piles = [Pile(unit=u, ports_n=args.ports) for u in units]
    for pile in piles:
        for port in range(1, min(args.plugged, pile.ports_n) + 1):
            pile.plug(port, soc=0.2 + 0.05 * port)
    async with EbcEmulator(piles, speed=args.speed, baud=args.baud) as emu:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            bound = await emu.serve_tcp(host or "127.0.0.1", int(port))
            print(f"EBC piles {units} on Modbus TCP {host}:{bound}", flush=True)
        if args.rtu_link:
            path = emu.open_rtu()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.rtu_link)
            os.symlink(path, args.rtu_link)
            print(f"EBC piles {units} on RTU {args.rtu_link} -> {path} @ {args.baud}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m firmware_stubs.ebc_pile", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--tcp", help="host:port to serve Modbus TCP on")
    ap.add_argument("--rtu-link", help="symlink to create to the emulated RS-485 line (a pty)")
    ap.add_argument("--unit", type=int, default=1, help="slave address of a single pile")
    ap.add_argument("--units", help="several piles on the line: 1-4 or 1,3,5")
    ap.add_argument("--ports", type=int, default=12)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    ap.add_argument("--plugged", type=int, default=3, help="ports with a battery charging at start")
    args = ap.parse_args(argv)
    if not args.tcp and not args.rtu_link:
        ap.error("give --tcp and/or --rtu-link")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
