"""Where the fire e-stop sequence's time above the line's floor goes, transaction by transaction.

Runs ``bench_fire``'s house and trials and, for each, reads the emulated RTU line's wire log
from the broadcast to the last pile's read-back: the silence before each request beyond the
3.5-character gap the floor already counts (the daemon's time between transactions, plus any
lateness of the emulator's own reply). Prints its percentiles and the slowest trials.

Run: ``python -m bench.fire_gaps [TRIALS]`` (40 by default; ~3 min).
"""

from __future__ import annotations

import sys
from typing import Any

from bench import bench_fire as bf
from bench.common import percentile
from firmware_stubs.modbus_frames import char_seconds, t35

CHAR = char_seconds(bf.BAUD)


def gaps(rtu: list[bf.Entry], units: list[int]) -> list[float]:
    """Extra silence before each transaction from the broadcast to the last read-back."""
    seqs = [s for s in (bf._sequence(rtu, u) for u in units) if s is not None]
    first, last = min(s[0] for s in seqs), max(s[2] for s in seqs)
    out = []
    for i in range(first + 1, last + 1):
        prev, cur = rtu[i - 1], rtu[i]
        prev_end = prev[0] if prev[1] is None else prev[1]
        start = cur[0] - (len(cur[3]) + 3) * CHAR
        out.append(start - prev_end - t35(bf.BAUD))
    return out


class GapBench(bf.Bench):
    def outcome(self, t0: float) -> dict[str, Any] | None:
        got = super().outcome(t0)
        if got is not None:

            async def log() -> list[bf.Entry]:
                return bf._since(self.site.rtu.wire_log, t0)

            got["gaps"] = gaps(self.site.call(log()), self.rtu_units)
        return got


def main(trials: int) -> None:
    results, (floor, _) = bf.measure(trials, GapBench)
    ver = [r["verified"] for r in results]
    print(
        f"read-back / floor: p50 {percentile(ver, 50) / floor:.3f}, p99 {percentile(ver, 99) / floor:.3f}"
    )
    g = [x * 1000 for r in results for x in r["gaps"]]
    ps = ", ".join(f"p{p} {percentile(g, p):.2f}" for p in (50, 90, 99))
    print(f"extra ms per transaction: {ps}, max {max(g):.2f} (n = {len(g)})")
    for r in sorted(results, key=lambda r: r["verified"])[-3:]:
        top = sorted((round(1000 * x, 1) for x in r["gaps"]), reverse=True)[:6]
        print(
            f"slow trial: read-back {1000 * r['verified']:.0f} ms, broadcast after"
            f" {1000 * r['broadcast']:.1f} ms, extra {1000 * sum(r['gaps']):.0f} ms, largest {top}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
