"""The monitoring pack: rules pass promtool and their unit tests, every alert is tested, the
rules and dashboard use only metrics the gateway exports, the inventory becomes file_sd
targets; and a real Prometheus scraping a running gateway sees its fire and overheat alerts."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.ebc_pile import EbcEmulator, Pile
from gatewayd import plugins
from gatewayd.metrics.families import catalogue
from tests.harness import REPO, Broker, Daemon, free_port, make_site, wait_until
from tests.harness import ReceiverThread as EmulatorThread
from tests.metrics_site import catalogued

CATALOGUE = catalogue(plugins.families())

MON = REPO / "monitoring"
RULES = sorted((MON / "rules").glob("*.yml"))
ALERTS = MON / "rules" / "gatewayd-alerts.yml"
DASHBOARD = MON / "grafana" / "gatewayd-township.json"
promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus"
)


def run(*cmd: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


# -- the rules -------------------------------------------------------------------------------


@promtool
def test_rules_pass_promtool_check() -> None:
    out = run("promtool", "check", "rules", *map(str, RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 20 rules found" in out.stdout  # the alerts
    assert "SUCCESS: 27 rules found" in out.stdout  # the roll-ups


@promtool
def test_rule_unit_tests_pass() -> None:
    tests = sorted(p.name for p in (MON / "tests").glob("*.yml"))
    assert tests == ["alerts_test.yml", "rollups_test.yml"]
    out = run("promtool", "test", "rules", *tests, cwd=MON / "tests")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == 2


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    alerts = set(re.findall(r"^\s+- alert: (\w+)", ALERTS.read_text(), re.M))
    tests = (MON / "tests" / "alerts_test.yml").read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", tests))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", tests))
    assert len(alerts) == 20
    assert alerts == firing  # each seen firing...
    assert alerts == quiet  # ...and each seen not firing when it should not


def test_every_critical_alarm_type_has_an_alert() -> None:
    """Each critical type the gateway's rules declare (docs/alarms.md) is named by an alert's
    ``alarm_types`` annotation, so the township centre is woken for every one of them."""
    from rules.engine import Engine

    critical = {
        t for t, spec in Engine.from_config({}).catalogue().all().items()
        if spec.severity == "critical"
    }  # fmt: skip
    covered: dict[str, str] = {}
    alert = ""
    for line in ALERTS.read_text().splitlines():
        if m := re.match(r"\s+- alert: (\w+)", line):
            alert = m.group(1)
        elif m := re.match(r'\s+alarm_types: "([^"]*)"', line):
            covered.update(dict.fromkeys(m.group(1).split(), alert))
    assert critical <= set(covered), f"no alert for {sorted(critical - set(covered))}"
    assert set(covered) <= critical | {"smoke.heat_alarm"}, "an alert names an unknown type"


def test_rules_and_dashboard_use_only_what_the_gateway_and_the_rollups_export() -> None:
    rollups = (MON / "rules" / "gatewayd-rollups.yml").read_text()
    recorded = set(re.findall(r"record: (\S+)", rollups))
    sources = {p.name: p.read_text() for p in [*RULES, DASHBOARD]}
    for name, text in sources.items():
        used = {catalogued(n, CATALOGUE) for n in re.findall(r"(?<![:\w])gatewayd_\w+", text)}
        assert used, name
        assert used <= set(CATALOGUE), f"{name} uses {used - set(CATALOGUE)}"
        assert set(re.findall(r"\b(?:village|township):gatewayd_\w+:\w+", text)) <= recorded, name


def test_dashboard_drills_down_township_village_house() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert list(variables) == ["datasource", "township", "village", "gateway"]
    assert "$township" in variables["village"]["definition"]
    assert "$village" in variables["gateway"]["definition"]
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Township $township", "Village $village", "House $gateway"]
    links = [
        link["url"]
        for p in dash["panels"]
        for o in p.get("fieldConfig", {}).get("overrides", [])
        for prop in o["properties"]
        for link in prop["value"]
    ]
    assert any("var-village=${__value.raw}" in u for u in links)
    assert any("var-gateway=${__value.raw}" in u for u in links)
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"


HOUSE = {"township": "新庄镇", "village": "柳墅村", "gateway": "xz-liushu-017"}


def house_panels() -> dict[str, dict[str, Any]]:
    """The panels of the house row (below "House $gateway"), by title."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    row = next(p["gridPos"]["y"] for p in panels if p["title"] == "House $gateway")
    return {p["title"]: p for p in panels if p["gridPos"]["y"] > row}


def queries(panel: dict[str, Any], where: dict[str, str] = HOUSE) -> dict[str, str]:
    """A panel's PromQL by refId, with the dashboard's variables filled in."""
    out = {}
    for t in panel["targets"]:
        expr = t["expr"]
        for name, value in where.items():
            expr = expr.replace(f"${name}", value)
        out[t["refId"]] = expr
    return out


def test_the_house_shows_fire_mode_held_doors_and_what_is_up() -> None:
    house = house_panels()
    assert queries(house["Fire mode"])["A"] == 'gatewayd_fire_mode{gateway="xz-liushu-017"}'
    assert "gatewayd_door_held_open" in queries(house["Doors held open"])["A"]
    assert "gatewayd_door_held_open" in " ".join(queries(house["Doors"]).values())
    assert "gatewayd_device_up" in " ".join(queries(house["Devices"]).values())
    up = " ".join(queries(house["Buses and receivers"]).values())
    assert "gatewayd_bus_up" in up and "gatewayd_receiver_up" in up
    for title in ("Devices down", "Buses down", "Receivers down"):
        assert title in house
    houses = next(p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == "Houses")
    columns = houses["transformations"][1]["options"]["renameByName"].values()
    assert {"fire mode", "doors held open", "devices down", "alarms"} <= set(columns)
    smoke = house["Smoke detectors"]
    assert queries(smoke)["F"] == 'gatewayd_smoke_supervised{gateway="xz-liushu-017"}'
    assert smoke["transformations"][1]["options"]["renameByName"]["Value #F"] == "supervised"
    # A quiet house reads 0, never "No data": tables say so, counts fall back to 0.
    for title in ("Active alarms",):
        assert house[title]["fieldConfig"]["defaults"]["noValue"] == "0"
    for title in ("Alarms", "Doors held open", "Devices down", "Buses down", "Receivers down"):
        assert " or (0 * max(up{" in queries(house[title])["A"], title


# -- the inventory ---------------------------------------------------------------------------


def test_inventory_becomes_file_sd_targets(tmp_path: Path) -> None:
    out = tmp_path / "gatewayd.json"
    # Run as docs/monitoring.md says: the script itself is the command (executable, shebang).
    done = run(str(MON / "inventory_to_sd.py"), str(MON / "inventory.example.csv"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "3 gateways in 2 villages" in done.stderr
    assert json.loads(out.read_text()) == [
        {
            "targets": ["10.8.2.1:9108"],
            "labels": {"gateway": "xz-dongtan-001", "village": "东滩村", "township": "新庄镇"},
        },
        {
            "targets": ["10.8.1.17:9108"],
            "labels": {"gateway": "xz-liushu-017", "village": "柳墅村", "township": "新庄镇"},
        },
        {
            "targets": ["10.8.1.18:9108"],
            "labels": {"gateway": "xz-liushu-018", "village": "柳墅村", "township": "新庄镇"},
        },
    ]


def test_a_bad_inventory_names_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "inventory.csv"
    bad.write_text(
        "\ufeffgateway_id,address,village,township\n"
        "xz-1,10.0.0.1,柳墅村,新庄镇\n"
        "xz 2,10.0.0.2,柳墅村,新庄镇\n"
        "xz-3,10.0.0.1:9108,柳墅村,新庄镇\n"
        "xz-1,10.0.0.4:99999,柳墅村,\n"
        "xz.5,10.0.0.5,柳墅村,新庄镇\n"
    )
    out = tmp_path / "gatewayd.json"
    out.write_text("[]\n")
    done = run(sys.executable, str(MON / "inventory_to_sd.py"), str(bad), "-o", str(out))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{bad}:3: gateway_id 'xz 2' is not a gateway id (letters A-Z a-z, digits, _ -)",
        f"{bad}:4: address 10.0.0.1:9108 is on line 2 already",
        f"{bad}:5: empty township",
        f"{bad}:6: gateway_id 'xz.5' is not a gateway id (letters A-Z a-z, digits, _ -)",
        "nothing written",
    ]
    assert out.read_text() == "[]\n"


@promtool
def test_example_prometheus_config_is_valid(tmp_path: Path) -> None:
    shutil.copytree(MON, tmp_path / "prometheus")
    targets = tmp_path / "prometheus" / "targets"
    targets.mkdir()
    inventory = str(tmp_path / "prometheus" / "inventory.example.csv")
    run(
        sys.executable,
        str(MON / "inventory_to_sd.py"),
        inventory,
        "-o",
        str(targets / "gatewayd.json"),
    )
    out = run("promtool", "check", "config", "prometheus.yml", cwd=tmp_path / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr


# -- a real Prometheus against a running gateway ------------------------------------------------


class PileThread:
    """The EBC emulator (one pile over Modbus TCP) on its own loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pile = Pile(unit=1)
        for port in (2, 3, 5):
            self.pile.plug(port)
        self.emu = EbcEmulator([self.pile])
        self.call(self.emu.__aenter__())
        self.port: int = self.call(self.emu.serve_tcp())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def do(self, fn: Callable[[], None]) -> None:
        async def on_loop() -> None:
            fn()

        self.call(on_loop())

    def close(self) -> None:
        self.call(self.emu.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Prometheus:
    """Debian's prometheus on a loopback port, scraping and evaluating every second."""

    def __init__(self, workdir: Path, targets: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            "rule_files:\n" + "".join(f"  - {r}\n" for r in RULES) + "scrape_configs:\n"
            "  - job_name: gatewayd\n"
            f"    file_sd_configs:\n      - files: ['{targets}']\n"
            "    relabel_configs:\n      - source_labels: [gateway]\n        target_label: instance\n"
        )
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
            return json.loads(resp.read())["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def alert(self, name: str, state: str = "firing") -> dict[str, Any] | None:
        time.sleep(0.1)  # callers poll: spare the two shared cores
        for a in self.api("alerts")["alerts"]:
            if a["labels"]["alertname"] == name and a["state"] == state:
                return dict(a)
        return None

    def value(self, query: str) -> float | None:
        time.sleep(0.1)
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture
def pile() -> Iterator[PileThread]:
    p = PileThread()
    yield p
    p.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433")
    yield emu
    emu.close()


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus missing: apt-get install prometheus"
)
def test_prometheus_sees_fire_and_overheat_alerts_of_a_running_gateway(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread, pile: PileThread
) -> None:
    metrics_port = free_port()
    body = (
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n\n'
        f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{receiver.rx.path}"\n\n'
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {pile.port}\n'
        "fast_seconds = 0.2\nslow_seconds = 1.0\n\n"
        '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "1A2B3C4D"\nroom = "301"\n\n'
        '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485"\nunit = 1\n'
    )
    daemon = Daemon(make_site(tmp_path, broker.url, body, gateway_id="xz-liushu-017"))
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        f"gateway_id,address,village,township\nxz-liushu-017,127.0.0.1:{metrics_port},柳墅村,新庄镇\n"
    )
    targets = tmp_path / "gatewayd.json"
    done = run(sys.executable, str(MON / "inventory_to_sd.py"), str(inventory), "-o", str(targets))
    assert done.returncode == 0, done.stderr
    daemon.start()
    prom = Prometheus(tmp_path, targets)
    try:
        wait_until(prom.ready, 20, "prometheus to be ready")
        here = {"gateway": "xz-liushu-017", "village": "柳墅村", "township": "新庄镇"}
        wait_until(lambda: prom.value('up{job="gatewayd"}') == 1, 15, "the gateway scraped")
        wait_until(
            lambda: prom.value('sum(gatewayd_charger_port_state{state="charging"})') == 3,
            15,
            "three ports charging",
        )
        assert prom.alert("FireAlarmActive") is None
        assert prom.alert("FireAlarmActive", "pending") is None
        assert prom.alert("ChargerOverheatCut") is None
        # The dashboard of a quiet house: every count a 0, never "No data".
        house = house_panels()
        for title in ("Fire mode", "Alarms", "Doors held open", "Devices down", "Buses down",
                      "Receivers down"):  # fmt: skip
            wait_until(
                lambda t=title: prom.value(queries(house[t])["A"]) == 0, 10, f"{title} reads 0"
            )
        houses = next(p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == "Houses")
        for ref in ("B", "D", "H", "I", "J"):  # fire alarms, alarms, fire mode, held open, down
            assert prom.value(queries(houses, HOUSE)[ref]) == 0, ref

        # The overheat first: a smoke alarm puts the house in fire mode, which switches the
        # piles off, and a port that is off is not cut for heat.
        t0 = time.monotonic()
        pile.do(lambda: pile.pile.heat_port(3, 75.0))
        hot = wait_until(lambda: prom.alert("ChargerOverheatCut"), 20, "ChargerOverheatCut firing")
        overheat_seconds = time.monotonic() - t0
        assert hot["labels"]["device"] == "pile-1"
        assert here.items() <= hot["labels"].items()
        assert not pile.pile.port(3).relay  # the gateway really cut it
        cuts = 'gatewayd_charger_cuts_total{device="pile-1",reason="overheat"}'
        wait_until(lambda: prom.value(cuts) == 1, 10, "the cut counted")

        t0 = time.monotonic()
        receiver.call(receiver.rx.detector("1A2B3C4D").alarm(90))
        fire = wait_until(lambda: prom.alert("FireAlarmActive"), 15, "FireAlarmActive firing")
        fire_seconds = time.monotonic() - t0
        assert {k: fire["labels"][k] for k in ("device", "room", "severity", "instance")} == {
            "device": "smoke-301", "room": "301", "severity": "critical", "instance": "xz-liushu-017"
        }  # fmt: skip
        assert here.items() <= fire["labels"].items()
        wait_until(lambda: prom.alert("FireModeActive"), 10, "FireModeActive firing")
        assert prom.value(queries(house["Fire mode"])["A"]) == 1
        assert prom.value(queries(houses, HOUSE)["H"]) == 1
        assert prom.value(queries(house["Alarms"])["A"]) >= 2  # the overheat, the smoke, the fire
        roll_up = 'township:gatewayd_fire_alarms:sum{township="新庄镇"}'
        wait_until(lambda: prom.value(roll_up) == 1, 10, "the township roll-up to count the fire")
        # scrape 1 s + evaluation 1 s, with slack for two shared cores
        assert fire_seconds < 10 and overheat_seconds < 15
    finally:
        prom.stop()
        daemon.stop()
