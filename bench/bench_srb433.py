"""SRB-433 decoder throughput: frames per second on one core over realistic radio traffic.

The stream mixes what the receiver really passes on: every event three times with the same SEQ,
stray bytes between frames, noise bursts containing false sync words, and some copies with a
bad CRC. It is fed in 64-byte reads, the size a USB-serial adapter hands over.

Rows:
- the decoder alone, beside a bare scan of the same buffer (``bytes.find`` for the sync word
  and ``zlib.crc32`` in C over each candidate, no parsing) measured in the same run;
- decoder + deduplicator + profile (frame → Event), the driver's whole per-frame path;
- headroom over the wire: 9600 baud 8N1 carries at most 960 bytes/s of these frames.

Run alone: ``python -m bench.bench_srb433 [--quick]``.
"""

from __future__ import annotations

import random
import sys
import time
import zlib
from typing import Any

from bench.common import row
from drivers.srb433 import profile
from drivers.srb433.codec import SYNC, Decoder, Deduplicator, Frame, encode

TARGET = 100_000
CHUNK = 64
PAYLOADS = {
    0x01: lambda r: bytes((r.randrange(256),)),
    0x02: lambda r: b"",
    0x03: lambda r: bytes((r.randrange(2),)),
    0x04: lambda r: r.randrange(2400, 2800).to_bytes(2, "big"),
    0x05: lambda r: bytes((r.randrange(2),)),
    0x06: lambda r: bytes((r.randrange(1, 4),)),
    0x07: lambda r: r.randrange(2600, 3300).to_bytes(2, "big") + bytes((r.randrange(156, 220),)),
    0x08: lambda r: b"",
    0x09: lambda r: bytes((r.randrange(50, 90),)),
}
# Heartbeats and alarms dominate real traffic.
WEIGHTS = {0x07: 40, 0x01: 20, 0x02: 10, 0x03: 5, 0x04: 5, 0x05: 5, 0x06: 5, 0x08: 5, 0x09: 5}


def make_stream(events: int, seed: int = 433) -> tuple[bytes, int]:
    """(bytes, number of good frame copies in them)."""
    r = random.Random(seed)
    detectors = [r.getrandbits(32) | 1 for _ in range(200)]
    seqs = dict.fromkeys(detectors, 0)
    types = list(WEIGHTS)
    weights = list(WEIGHTS.values())
    parts: list[bytes] = []
    good = 0
    for n in range(events):
        dev = r.choice(detectors)
        seqs[dev] = (seqs[dev] + 1) & 0xFF
        type_ = r.choices(types, weights)[0]
        wire = encode(Frame(type_, dev, seqs[dev], PAYLOADS[type_](r)))
        for _ in range(3):
            if r.random() < 0.02:
                parts.append(wire[:-1] + bytes((wire[-1] ^ 0x5A,)))  # corrupted copy
            else:
                parts.append(wire)
                good += 1
            if r.random() < 0.3:
                parts.append(r.randbytes(r.randrange(1, 9)))
        if n % 50 == 0:  # a noise burst with false sync words in it
            burst = bytearray(r.randbytes(64))
            for at in (5, 30, 50):
                burst[at : at + 3] = SYNC + bytes((r.randrange(256),))
            parts.append(bytes(burst))
    return b"".join(parts), good


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def decode_only(reads: list[bytes]) -> int:
    decoder = Decoder()
    return sum(len(decoder.feed(chunk)) for chunk in reads)


def full_path(reads: list[bytes]) -> int:
    decoder, dedup = Decoder(), Deduplicator()
    events = 0
    now = 1_700_000_000.0
    for i, chunk in enumerate(reads):
        mono = i * 0.001
        for frame in decoder.feed(chunk):
            if dedup.accept(frame, mono):
                profile.frame_to_event(frame, "smoke", now)
                events += 1
    return events


def bare_scan(data: bytes) -> int:
    """The least any Python decoder must do: find sync words and checksum candidates in C."""
    find, n, pos, found = data.find, len(data), 0, 0
    while (i := find(SYNC, pos)) >= 0:
        if i + 3 > n:
            break
        length = data[i + 2]
        end = i + length + 5
        if 6 <= length <= 64 and end <= n:
            zlib.crc32(data[i + 2 : end])
            found += 1
            pos = end
        else:
            pos = i + 2
    return found


def best_rate(fn: Any, arg: Any, count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return count / best


def run(quick: bool) -> list[dict[str, Any]]:
    events = 3_000 if quick else 40_000
    repeats = 2 if quick else 3
    data, good = make_stream(events)
    reads = chunks(data)
    decoded = decode_only(reads)
    if decoded != good:
        raise RuntimeError(f"decoder found {decoded} frames, the stream holds {good}")

    rate = best_rate(decode_only, reads, good, repeats)
    scan_rate = best_rate(bare_scan, data, good, repeats)
    path_rate = best_rate(full_path, reads, good, repeats)
    wire_rate = 960 / (len(data) / good)  # frames/s at 9600 baud 8N1 for this mix
    return [
        row(
            "srb433 decoder throughput",
            rate,
            "frames/s",
            baseline="bare bytes.find + zlib.crc32 scan, same buffer",
            baseline_value=scan_rate,
            target=f">= {TARGET} frames/s",
            ok=rate >= TARGET,
        ),
        row(
            "srb433 decode + dedup + event",
            path_rate,
            "frames/s",
            baseline="decoder alone",
            baseline_value=rate,
        ),
        row(
            "srb433 headroom over the 9600-baud line",
            rate,
            "frames/s",
            baseline="line rate of this mix at 9600 baud",
            baseline_value=wire_rate,
            target=">= 100x line rate",
            ok=rate >= 100 * wire_rate,
        ),
    ]


if __name__ == "__main__":
    for r in run("--quick" in sys.argv[1:]):
        print(r)
