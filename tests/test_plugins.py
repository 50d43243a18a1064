"""A third party's driver and rule load through the same entry points as the built-ins."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import config, plugins
from gatewayd.errors import ConfigError

PLUGIN = """
from gatewayd.driver import Driver
from gatewayd.schema import Int
from rules.engine import Rule

class ZigbeeDriver(Driver):
    name = "zigbee"
    bus_schema = {"channel": Int(11, 26, default=15)}
    device_schemas = {"smoke": {"short_addr": Int(0, 0xFFFF)}}

    async def run(self) -> None:
        pass

class CountRule(Rule):
    name = "count"
    schema = {"limit": Int(1, 10, default=3)}
"""


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "zb_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "zb_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zb-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gatewayd.drivers]\nzigbee = zb_plugin:ZigbeeDriver\n\n[gatewayd.rules]\ncount = zb_plugin:CountRule\n"
    )
    sys.path.insert(0, str(tmp_path))
    _clear()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("zb_plugin", None)
    _clear()


def _clear() -> None:
    plugins._entry_points.cache_clear()
    plugins.load_driver.cache_clear()
    plugins.rule_classes.cache_clear()


def test_third_party_driver_and_rule_validate_their_own_keys(
    third_party: Path, tmp_path: Path
) -> None:
    assert "zigbee" in plugins.driver_names()
    raw = {
        "gateway": {"id": "gw", "data_dir": str(tmp_path)},
        "mqtt": {"url": "mqtt://127.0.0.1"},
        "buses": [{"name": "zb", "driver": "zigbee", "channel": 20}],
        "devices": [{"id": "smoke-1", "kind": "smoke", "bus": "zb", "short_addr": 0x1234}],
        "rules": {"count": {"limit": 5}},
    }
    cfg = config.parse(raw)
    assert cfg.buses[0].settings == {"channel": 20}
    assert cfg.devices[0].settings == {"short_addr": 0x1234}
    assert cfg.rules["count"] == {"limit": 5}
    raw["devices"][0]["short_addr"] = "x"
    with pytest.raises(
        ConfigError, match=r'devices\[0\]\.short_addr: expected an integer 0\.\.65535, got "x"'
    ):
        config.parse(raw)


def test_reader_agrees_with_importlib_metadata(third_party: Path) -> None:
    for group in (plugins.DRIVER_GROUP, plugins.RULE_GROUP):
        ours = plugins._entry_points().get(group, {})
        theirs = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}
        assert ours == theirs


LAZY_PROBE = """
import sys
from gatewayd import config
from gatewayd.runtime import Gateway
gw = Gateway(config.load(sys.argv[1]))
loaded = sorted(m for m in ("drivers.modbus.family", "drivers.srb433.family",
                            "drivers.ble.family", "gatewayd_efm.family") if m in sys.modules)
spec = gw.alarms.catalogue["door.release_failed"]  # a family not loaded: read on a miss
print(" ".join(loaded), "|", spec.severity, spec.latched, "drivers.ble.family" in sys.modules)
"""


def test_a_house_imports_only_the_families_it_has(tmp_path: Path) -> None:
    """Start-up (issue 15): a family no device uses is not imported; its alarm types are
    still known (read the first time one is looked up, e.g. a persisted alarm)."""
    import subprocess

    from tests.harness import REPO, make_site, smoke_config

    site = make_site(
        tmp_path, "mqtt://127.0.0.1:1", smoke_config("/dev/null", {"smoke-1": "1A2B3C4D"})
    )
    out = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, str(site.config)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded, _, known = out.stdout.strip().partition(" | ")
    assert loaded == "drivers.srb433.family"
    assert known == "critical False True"
