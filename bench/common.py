"""Helpers shared by the benchmarks: percentiles, rows, a daemon to measure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from firmware_stubs.broker import free_port
from gatewayd.secrets import write_secret

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def row(
    name: str,
    value: float,
    unit: str,
    baseline: str = "",
    baseline_value: float | None = None,
    target: str = "",
    ok: bool | None = None,
    ratio: float | None = None,
) -> dict[str, Any]:
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else round(baseline_value, 4),
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "ok": ok,
    }


def write_site(
    tmp: Path, broker_url: str, body: str = "", per_minute: int = 6000, mqtt: str = ""
) -> tuple[Path, bytes]:
    """A gateway config and command key in ``tmp`` (the benchmarks' own throwaway site);
    ``mqtt``: more lines of its ``[mqtt]`` table."""
    key = os.urandom(32)
    key_file = tmp / "command.key"
    write_secret(str(key_file), key.hex())
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-bench"\ndata_dir = "{tmp / "data"}"\n\n'
        f'[mqtt]\nurl = "{broker_url}"\n{mqtt}\n[security]\ncommand_key_file = "{key_file}"\n'
        f"commands_per_minute = {per_minute}\n\n"
        # Metrics on, as deployed, on a free port (RSS and start-up are measured with them).
        f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n\n{body}'
    )
    return cfg, key


def start_daemon(
    cfg: Path, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """Start `gatewayd run`; return the process and seconds from spawn to its "ready" line."""
    t0 = time.perf_counter()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "-c", str(cfg)],
            stdout=logf,
            stderr=logf,
            cwd=REPO,
            env={**os.environ, **(extra_env or {})},
        )
    deadline = time.monotonic() + 30
    while b"ready:" not in log.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"daemon did not become ready: {log.read_text()[-2000:]}")
        time.sleep(0.002)
    return proc, time.perf_counter() - t0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
