"""Hardening: the soak, short. The whole emulated house (bench/soak.py) for about half a
minute at 300× normal event rates, two fault cycles (broker restart, receiver unplugged, a
pile silent, a lock out of range, a fire episode), then the checks of the long run: no lost
critical event, RSS growth ≤ 5 % after the first cycle, no descriptor or thread growth, every
command answered once, the rules still acting, a clean stop.

The long run is ``python -m bench.soak --minutes 30`` (figures in docs/reliability.md); set
``GATEWAYD_SOAK_MINUTES`` to run a long one here too (marked ``slow``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.soak import soak, verdict


def _show(fig: dict) -> str:
    keys = ("seconds", "events_received", "critical_injected", "critical_lost", "faults",
            "command_codes", "commands_unanswered", "command_answer_seconds", "driver_errors",
            "rss_kb", "rss_growth_pct", "fds", "threads", "final")  # fmt: skip
    return json.dumps({k: fig[k] for k in keys}, ensure_ascii=False)


def test_soak_short_two_fault_cycles_nothing_lost_nothing_leaked(tmp_path: Path) -> None:
    fig = soak(28, rate=300, workdir=tmp_path)  # logs kept with pytest's temporary dirs
    print(f"\nsoak: {_show(fig)}")
    assert verdict(fig) == [], _show(fig)
    assert fig["critical_injected"] >= 5
    assert len(fig["faults"]) == 10  # two cycles of five
    assert fig["command_codes"].get("ok", 0) >= 20


@pytest.mark.slow
@pytest.mark.timeout(0)
@pytest.mark.skipif(
    not os.environ.get("GATEWAYD_SOAK_MINUTES"), reason="set GATEWAYD_SOAK_MINUTES to soak here"
)
def test_soak_long() -> None:
    minutes = float(os.environ["GATEWAYD_SOAK_MINUTES"])
    fig = soak(minutes * 60, rate=float(os.environ.get("GATEWAYD_SOAK_RATE", "10")))
    print(f"\nsoak: {_show(fig)}")
    assert verdict(fig) == [], _show(fig)
