"""The soak's figures and verdict: what a run's records add up to (see bench/soak.py)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from bench.soak_peers import Platform

Sample = tuple[float, dict[str, int]]  # (seconds into the run, /proc figures)


def command_figures(platform: Platform) -> dict[str, Any]:
    """Every command sent: its first answer's code, the ones never answered or answered
    twice (at-least-once delivery: ids tell them apart), and how long answers took."""
    with platform.lock:
        results = {k: list(v) for k, v in platform.results.items()}
    codes = Counter(r[0]["code"] for r in results.values() if r)
    unanswered = [f"{c} {what}" for c, what in platform.sent.items() if c not in results]
    waits = sorted(platform.answer_seconds())
    return {
        "commands_sent": len(platform.sent),
        "command_codes": dict(codes),
        "commands_unanswered": unanswered[-10:],
        "commands_unanswered_count": len(unanswered),
        "commands_answered_twice": sum(1 for r in results.values() if len(r) > 1),
        "command_answer_seconds": {
            "p50": round(waits[len(waits) // 2], 3) if waits else None,
            "p99": round(waits[int(len(waits) * 0.99)], 3) if waits else None,
            "max": round(waits[-1], 3) if waits else None,
        },
    }


def process_figures(samples: list[Sample], warm_after: float) -> dict[str, Any]:
    """RSS, descriptors and threads: after warm-up (the first fault cycle) against the end."""
    warm = next((s for t, s in samples if t >= warm_after), samples[0][1])
    end = samples[-1][1]
    return {
        "rss_kb": {"warm": warm["rss_kb"], "end": end["rss_kb"], "first": samples[0][1]["rss_kb"]},
        "rss_growth_pct": round(100 * (end["rss_kb"] - warm["rss_kb"]) / warm["rss_kb"], 2),
        "series": [  # (s, RSS kB, fds, threads), about twenty points over the run
            (round(t), x["rss_kb"], x["fds"], x["threads"])
            for t, x in samples[:: max(1, len(samples) // 20)]
        ],
        "fds": {"warm": warm["fds"], "end": end["fds"]},
        "threads": {"warm": warm["threads"], "end": end["threads"]},
    }


def verdict(fig: dict[str, Any], rss_pct: float = 5.0) -> list[str]:
    """What failed, in words; empty when the soak passed."""
    bad = []
    if fig["critical_lost"]:
        bad.append(f"critical events lost: {fig['critical_lost']}")
    if fig["fire_mode_events"] < fig["fire_episodes"]:
        bad.append(f"{fig['fire_mode_events']} fire_mode events for {fig['fire_episodes']} fires")
    if fig["rss_growth_pct"] > rss_pct:
        bad.append(f"RSS grew {fig['rss_growth_pct']} % after warm-up")
    if fig["fds"]["end"] > fig["fds"]["warm"] + 2:  # a link reconnecting at that instant
        bad.append(f"file descriptors {fig['fds']['warm']} -> {fig['fds']['end']}")
    # asyncio's default executor starts its workers on demand, up to min(32, CPUs + 4): that
    # much growth is a pool filling up, more would be a leak.
    pool = min(32, (os.cpu_count() or 1) + 4)
    if fig["threads"]["end"] > fig["threads"]["warm"] + pool:
        bad.append(f"threads {fig['threads']['warm']} -> {fig['threads']['end']}")
    if fig["commands_unanswered_count"]:  # twice is at-least-once delivery: ids tell them apart
        bad.append(f"commands unanswered: {fig['commands_unanswered_count']}")
    final = fig["final"]
    if not (final.get("overheat_cut") and final.get("fire_mode") and final.get("all_relays_open")):
        bad.append(f"final checks: {final}")
    if fig["tracebacks"] or fig["exit_code"] != 0:
        bad.append(f"tracebacks {fig['tracebacks']}, exit code {fig['exit_code']}")
    return bad
