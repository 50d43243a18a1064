"""`gatewayd check` estimates a site's monthly uplink (issue 17): for the bench house the
estimate is within a stated factor of what bench/bench_uplink.py measured, it follows the
[uplink] settings, and the line reads in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd import config, plugins
from gatewayd.secrets import write_secret
from gatewayd.uplink.volume import estimate
from tests.cli_support import gatewayd
from tests.harness import make_site

#: bench/bench_uplink.py, 24 h simulated, 2026-11-29 (docs/benchmarks.md): MB per 30 days and
#: messages a day of the bench house, by exception and every read. Recorded rather than run
#: here: a simulated day takes ~30 s of CPU and three runs spread 18.5-20.6 MB by exception.
MEASURED = {"by_exception": (19.7, 3494), "every_reading": (480.1, 40619)}
#: The estimate is a rate model over per-family averages: it must land within this factor.
FACTOR = 1.3


def bench_house(tmp: Path, uplink: str = "") -> str:
    """The bench's house as a gateway.toml: one 12-port pile polled at 1 s / 10 s, six hourly
    detectors, one entrance lock."""
    key = tmp / "door.key"
    write_secret(str(key), "00" * 16)
    body = [
        uplink,
        '[[buses]]\nname = "rs485"\ndriver = "modbus"\nport = "/dev/ttyUSB0"\n'
        "fast_seconds = 1.0\nslow_seconds = 10.0\n",
        '[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "/dev/ttyUSB1"\n',
        '[[buses]]\nname = "ble"\ndriver = "ble"\n',
        '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485"\nunit = 1\n',
        '[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "ble"\n'
        f'address = "C0:FF:EE:00:00:01"\nkey_file = "{key}"\n',
    ]
    body += [
        f'[[devices]]\nid = "smoke-{i}"\nkind = "smoke"\nbus = "smoke-rx"\n'
        f'address = "1A2B3C4{i}"\nmodel = "SD-10"\n'
        for i in range(1, 7)
    ]
    return "\n".join(body)


def site_estimate(tmp: Path, uplink: str = "") -> tuple[float, float]:
    site = make_site(tmp, "mqtt://127.0.0.1:9", bench_house(tmp, uplink))
    est = estimate(config.load(str(site.config)), plugins.families())
    assert not est.unknown and sum(est.counted.values()) == 8
    return est.mb_month, est.messages_day


@pytest.mark.parametrize("report", ["by_exception", "every_reading"])
def test_the_estimate_for_the_bench_house_is_within_the_factor_of_the_bench(
    tmp_path: Path, report: str
) -> None:
    mb, messages = site_estimate(tmp_path, f'[uplink]\nreport = "{report}"\n')
    want_mb, want_messages = MEASURED[report]
    assert want_mb / FACTOR <= mb <= want_mb * FACTOR, (mb, want_mb)
    assert want_messages / FACTOR <= messages <= want_messages * FACTOR, (messages, want_messages)


def test_the_estimate_follows_the_uplink_settings(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shipped = site_estimate(tmp_path / "a")
    chatty = site_estimate(
        tmp_path / "b", "[uplink]\nstate_refresh_seconds = 60\ntelemetry_max_seconds = 10\n"
    )
    # A pile's state every minute instead of every 15 (1 440 vs 96 a day, 1.25 KB each) and
    # telemetry every 10 s (8 640 vs 2 445 a day): several times the volume.
    assert chatty[0] > 3 * shipped[0] and chatty[1] > 3 * shipped[1]


def test_check_says_the_estimate_in_english_and_chinese(tmp_path: Path) -> None:
    site = make_site(tmp_path, "mqtt://127.0.0.1:9", bench_house(tmp_path))
    mb, _ = site_estimate(tmp_path)
    en = gatewayd("--lang", "en", "check", "-c", str(site.config))
    zh = gatewayd("--lang", "zh", "check", "-c", str(site.config))
    line = next(x for x in en.stdout.splitlines() if x.startswith("· uplink:"))
    assert f"about {mb:.1f} MB a month" in line and "an estimate" in line
    assert "report = by_exception" in line
    assert any(x.startswith("· 上行流量：约每月") and f"{mb:.1f} MB" in x and "估算" in x
               for x in zh.stdout.splitlines()), zh.stdout  # fmt: skip
