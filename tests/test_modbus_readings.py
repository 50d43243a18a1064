"""Charging pile registers → readings, over every recorded register dump of every pile model
(tests/fixtures/ebc): the pile block, each port block with its relay, and the summary block,
as the datasheet's register map and the gateway's reading names say."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.modbus import readings as rd
from drivers.modbus.profiles import PROFILES, bits_named
from tests.fixtures import parametrize_cases
from tests.fixtures.cases import ebc_snapshots, image


def approx(expected: dict[str, Any]) -> dict[str, Any]:
    """Scaled values (0.1 °C, 0.01 A) compared as numbers, not as binary fractions."""
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in expected.items()}


@parametrize_cases("ebc", ebc_snapshots, "snap")
def test_pile_block(snap: dict[str, Any]) -> None:
    profile = PROFILES[snap["profile"]]
    pile = rd.decode_pile(profile, image(snap["input"]))
    expected = dict(snap["readings"]["pile"])
    assert bits_named(profile.status_bits, pile["status_bits"]) == expected.pop("status")
    assert pile == approx(expected)


@parametrize_cases("ebc", ebc_snapshots, "snap")
def test_every_port_block(snap: dict[str, Any]) -> None:
    profile, regs = PROFILES[snap["profile"]], image(snap["input"])
    relays = snap["coils"]["0"]
    got = [rd.decode_port(profile, regs, p, relays[p - 1]) for p in range(1, snap["ports_n"] + 1)]
    assert got == [approx(port) for port in snap["readings"]["ports"]]


@parametrize_cases("ebc", ebc_snapshots, "snap")
def test_summary_block(snap: dict[str, Any]) -> None:
    profile = PROFILES[snap["profile"]]
    summary = rd.decode_summary(profile, image(snap["input"]), snap["ports_n"])
    assert summary == approx(snap["readings"]["summary"])


@parametrize_cases("ebc", ebc_snapshots, "snap")
def test_the_summary_points_at_the_ports_to_read_first(snap: dict[str, Any]) -> None:
    """A first summary reads every port; the recorded ports that charge or are in fault are
    among those a change of summary points at."""
    profile, ports_n = PROFILES[snap["profile"]], snap["ports_n"]
    summary = rd.decode_summary(profile, image(snap["input"]), ports_n)
    assert rd.ports_to_refresh(None, summary, ports_n) == list(range(1, ports_n + 1))
    quiet = {**summary, "charging": [], "faulted": [], "hottest_port": 0}
    wanted = set(rd.ports_to_refresh(quiet, summary, ports_n))
    ports = snap["readings"]["ports"]
    assert {p["port"] for p in ports if p["state"] == "charging"} <= wanted
    assert {p["port"] for p in ports if p["fault"] != "none"} <= wanted
