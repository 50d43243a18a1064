"""The charger watch's line cost on the bench's line, by arithmetic (no emulator, no timing).

For every pile of ``bench_modbus``'s line and every socket in use taken as the port cut hot,
the requests one watch sweep sends (``readings.watch_ports``, planned as the driver plans
them), and their wire time at 9600 baud: frames, two 3.5-character gaps and the emulator's
5 ms turnaround each. Beside it: a sweep of all 12 ports, and the summary round. Noise-free,
so it says what the latency series cannot on a loaded machine: how much line a watched pile
takes per round.

Run: ``python -m bench.modbus_sweeps``.
"""

from __future__ import annotations

import statistics

from bench.bench_modbus import BAUD, LINE_SETTINGS, PORTS, _piles
from drivers.modbus import readings as rd
from drivers.modbus.coalesce import Span, coalesce
from drivers.modbus.pile import Timing
from drivers.modbus.profiles import EBC
from drivers.modbus.transport import rtu_sizes

CHAR = 10 / BAUD  # 8N1
TURNAROUND = 0.005  # EbcEmulator's default


def wire(spans: list[Span]) -> float:
    return sum(sum(rtu_sizes(4, count)) * CHAR + 7 * CHAR + TURNAROUND for _, count in spans)


def plan(ports: list[int]) -> list[Span]:
    per_request = int(LINE_SETTINGS["max_read_registers"])
    spans = [EBC.port_span(p) for p in ports]
    return coalesce(spans, per_request, Timing.max_gap, EBC.readable(PORTS))


def sweeps(idle_off: bool) -> list[tuple[int, float]]:
    """(ports read, wire seconds) of one sweep, per pile and per socket in use cut hot."""
    out = []
    for pile in _piles(idle_off=idle_off):
        relays = [p.relay for p in pile.ports]
        in_use = [p.number for p in pile.ports if p.battery is not None]
        for cut in in_use:
            state = {
                p.number: {"state": "disabled" if p.number == cut or not p.relay else "idle"}
                for p in pile.ports
            }
            closed = [r and n != cut for n, r in enumerate(relays, start=1)]
            ports = rd.watch_ports(PORTS, closed, state, {"charging": []})
            out.append((len(ports), wire(plan(ports))))
    return out


def main() -> None:
    summary = sum(rtu_sizes(4, 6)) * CHAR + 7 * CHAR + TURNAROUND
    print(f"summary read {summary * 1000:.1f} ms; a round of 16: {16 * summary:.3f} s")
    print(f"sweep of all {PORTS} ports: {wire(plan(list(range(1, PORTS + 1)))):.3f} s")
    for idle_off in (False, True):
        runs = sweeps(idle_off)
        what = "free sockets off" if idle_off else "free sockets powered"
        ports = statistics.mean(n for n, _ in runs)
        mean, worst = statistics.mean(w for _, w in runs), max(w for _, w in runs)
        print(f"{what}: {ports:.1f} ports a sweep, {mean:.3f} s on average, {worst:.3f} s at worst")


if __name__ == "__main__":
    main()
