"""The metrics endpoint over a real Gateway: what a scrape says after the devices spoke, who
may scrape, and that a real daemon's scrape passes `promtool check metrics`."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.ble import protocol as lock_proto
from gatewayd import metrics, plugins
from gatewayd.metrics.families import EventCounters, catalogue
from gatewayd.model import Event
from gatewayd.runtime import Gateway
from gatewayd.supervisor import Supervised
from tests import metrics_site as ms
from tests.harness import Broker, Daemon, free_port, make_site, wait_until
from tests.harness import ReceiverThread as EmulatorThread

CATALOGUE = catalogue(plugins.families())


def charger_counters() -> EventCounters:
    """Counters for a house whose every device is a charging pile."""
    charger = plugins.family("charger")
    return EventCounters(plugins.families(), lambda _device: charger)


def energy(counters: EventCounters, device: str, port: str) -> float | None:
    return counters.tally.of("energy_wh", device).get(port)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def fetch(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = ms.make_gateway(tmp_path, chargers=2, detectors=3, locks=1, listen="127.0.0.1:0")
    yield gw
    ms.close_gateway(gw)


def test_scrape_reports_what_the_devices_said(gateway: Gateway) -> None:
    async def main() -> str:
        handle = metrics.attach(gateway)  # on the loop, as the runtime does
        try:
            assert handle.server is not None
            ms.fill(gateway)
            ms.smoke_frame(gateway, "smoke-2", 0x01, bytes([90]), seq=7)  # smoke alarm
            ms.lock_record(gateway, "door-1", lock_proto.Forced(seq=20))
            ms.port_cut(gateway, "pile-1", 3, "charger_overheat")
            ms.port_cut(gateway, "pile-1", 6, "command:tenant-302")
            status, body = await asyncio.to_thread(fetch, handle.server.url)
            assert status == 200
            return body
        finally:
            handle.close()

    body = asyncio.run(main())
    s = parse(body)
    assert value(s, "gatewayd_smoke_alarm_active", device="smoke-2", room="102") == 1
    assert value(s, "gatewayd_smoke_alarm_active", device="smoke-1", room="101") == 0
    assert (
        value(s, "gatewayd_alarm_active", device="smoke-2", type="smoke.alarm", severity="critical")
        == 1
    )
    assert (
        value(
            s,
            "gatewayd_alarm_acknowledged",
            device="smoke-2",
            type="smoke.alarm",
            severity="critical",
        )
        == 0
    )
    assert value(s, "gatewayd_alarms_active", type="smoke.alarm", severity="critical") == 1
    assert value(s, "gatewayd_smoke_missing", device="smoke-3") == 0
    assert value(s, "gatewayd_device_battery_volts", device="smoke-1") == pytest.approx(2.907)
    assert value(s, "gatewayd_smoke_rssi_dbm", device="smoke-1") == -62
    # piles: port 3 charges at 201 W, port 1 is idle (no power series), cuts by reason
    assert value(s, "gatewayd_charger_port_power_watts", device="pile-1", port="3") == 201
    assert value(s, "gatewayd_charger_port_power_watts", device="pile-1", port="1") is None
    assert value(s, "gatewayd_charger_port_state", device="pile-1", port="3", state="charging") == 1
    assert value(s, "gatewayd_charger_port_state", device="pile-1", port="1", state="idle") == 1
    assert value(s, "gatewayd_charger_port_temperature_celsius", device="pile-2", port="12") == 33.5
    assert value(s, "gatewayd_charger_cabinet_temperature_celsius", device="pile-2") == 31
    assert value(s, "gatewayd_charger_cuts_total", device="pile-1", reason="overheat") == 1
    assert value(s, "gatewayd_charger_cuts_total", device="pile-1", reason="command") == 1
    assert value(s, "gatewayd_device_up", device="pile-1", kind="charger") == 0  # no bus runs
    # the lock: forced open, unlocks by method, one denial; no user id anywhere
    assert value(s, "gatewayd_door_forced_total", device="door-1") == 1
    assert value(s, "gatewayd_door_open", device="door-1") == 1
    assert value(s, "gatewayd_door_unlocks_total", device="door-1", method="card") == 2
    assert value(s, "gatewayd_door_denied_total", device="door-1") == 1
    assert "tenant" not in body
    labels = {k: v for _, ls in s for k, v in ls}
    assert "user" not in labels and not {"302", "303", "304", "305"} & set(labels.values())
    # the gateway itself
    assert value(s, "gatewayd_broker_connected") == 0
    # A smoke alarm was raised, but no broker took it: nothing delivered, nothing counted yet.
    assert value(s, "gatewayd_critical_delivery_seconds_count") == 0
    assert value(s, "gatewayd_critical_delivery_seconds_bucket", le="+Inf") == 0
    assert value(s, "gatewayd_command_results_total", code="bad_signature") == 0
    assert value(s, "gatewayd_rule_actions_total", rule="smoke") == 0
    assert 0 <= value(s, "gatewayd_event_loop_lag_seconds") < 1  # type: ignore[operator]
    assert abs(value(s, "gatewayd_start_time_seconds") - gateway.started) < 1e-3  # type: ignore[operator]
    assert value(s, "process_resident_memory_bytes")
    exported = {ms.catalogued(name, CATALOGUE) for name, _ in s if name.startswith("gatewayd_")}
    assert exported <= set(CATALOGUE)  # every exported metric is documented in the catalogue


def test_energy_counter_only_grows_across_sessions() -> None:
    counters = charger_counters()

    def sample(wh: float, state: str = "charging") -> None:
        port = {"port": 2, "state": state, "energy_wh": wh, "power_w": 200}
        counters(Event("pile-1", "charger.sample", data={"source": "ports", "ports": [port]}))

    sample(0, "idle")
    assert energy(counters, "pile-1", "2") is None  # no series for a port that never charged
    sample(5)
    sample(40)
    sample(40, "full")
    sample(0, "idle")  # unplugged: the pile's session register starts again
    sample(12)
    assert energy(counters, "pile-1", "2") == 52
    fresh = charger_counters()  # a daemon that starts mid-session does not claim what came before
    fresh(
        Event(
            "pile-1",
            "charger.sample",
            data={"source": "ports", "ports": [{"port": 1, "state": "charging", "energy_wh": 300}]},
        )
    )
    fresh(
        Event(
            "pile-1",
            "charger.sample",
            data={"source": "ports", "ports": [{"port": 1, "state": "charging", "energy_wh": 310}]},
        )
    )
    assert energy(fresh, "pile-1", "1") == 10


class StatsDriver:
    """A driver offering the optional stats()/last_seen() faces (docs/monitoring.md)."""

    def __init__(self, seen: dict[str, float]) -> None:
        self.seen = seen

    def stats(self) -> dict[str, float]:
        return {
            "requests_total": 120,
            "errors_total": 3,
            "timeouts_total": 2,
            "utilisation_ratio": 0.25,
            "watched_piles": 1,
            "bogus": 9,
        }

    def last_seen(self) -> dict[str, float]:
        return self.seen


def test_bus_stats_and_last_seen_from_drivers_that_offer_them(gateway: Gateway) -> None:
    now = time.time()
    smoke = Supervised("smoke-rx", lambda: None, lambda *a: None)  # type: ignore[arg-type,return-value]
    smoke.driver = StatsDriver({"smoke-1": now - 42})  # type: ignore[assignment]
    smoke.restarts = 2
    gateway.buses["smoke-rx"] = smoke
    gateway.set_state(
        gateway.config.gateway_id,
        {"receiver.smoke-rx": {"online": True, "bad_crc": 4, "bad_len": 1}},
    )
    handle = metrics.serve(gateway, "")
    try:
        s = parse(handle.exposition().decode())
    finally:
        handle.close()
    assert value(s, "gatewayd_bus_requests_total", bus="smoke-rx") == 120
    assert value(s, "gatewayd_bus_timeouts_total", bus="smoke-rx") == 2
    assert value(s, "gatewayd_bus_utilisation_ratio", bus="smoke-rx") == 0.25
    assert value(s, "gatewayd_bus_watched_piles", bus="smoke-rx") == 1
    assert value(s, "gatewayd_driver_restarts_total", bus="smoke-rx") == 2
    assert value(s, "gatewayd_bus_up", bus="smoke-rx", driver="serial") == 1
    assert value(s, "gatewayd_bus_up", bus="rs485", driver="modbus") == 0  # not running
    assert value(s, "gatewayd_device_up", device="smoke-1", kind="smoke") == 1
    assert value(s, "gatewayd_device_up", device="pile-1", kind="charger") == 0
    assert 41.5 < value(s, "gatewayd_device_last_seen_age_seconds", device="smoke-1") < 45  # type: ignore[operator]
    assert value(s, "gatewayd_receiver_up", bus="smoke-rx") == 1
    assert value(s, "gatewayd_receiver_bad_frames_total", bus="smoke-rx", reason="crc") == 4
    assert not any(name == "gatewayd_bus_bogus" for name, _ in s)  # unknown keys are ignored


def test_a_plugin_whose_stats_fail_costs_its_own_figures_not_the_scrape(
    gateway: Gateway,
) -> None:
    class Broken:
        def stats(self) -> dict[str, float]:
            raise RuntimeError("plugin bug")

        def last_seen(self) -> list[int]:  # not a mapping
            return [1, 2]

    good = Supervised("smoke-rx", lambda: None, lambda *a: None)  # type: ignore[arg-type,return-value]
    good.driver = StatsDriver({"smoke-1": time.time()})  # type: ignore[assignment]
    bad = Supervised("rs485", lambda: None, lambda *a: None)  # type: ignore[arg-type,return-value]
    bad.driver = Broken()  # type: ignore[assignment]
    gateway.buses.update({"smoke-rx": good, "rs485": bad})
    handle = metrics.serve(gateway, "")
    try:
        s = parse(handle.exposition().decode())
    finally:
        handle.close()
    assert value(s, "gatewayd_bus_up", bus="rs485", driver="modbus") == 1
    assert value(s, "gatewayd_bus_requests_total", bus="rs485") is None
    assert value(s, "gatewayd_bus_requests_total", bus="smoke-rx") == 120


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "metrics.pem", tmp / "metrics.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_basic_auth_and_tls_guard_the_endpoint(gateway: Gateway, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    handle = metrics.serve(
        gateway,
        "127.0.0.1:0",
        username="monitor",
        password=b"s3cret\n",
        certfile=str(cert),
        keyfile=str(key),
    )
    try:
        assert handle.server is not None
        url = handle.server.url
        assert url.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cafile=str(cert))
        good = "Basic " + base64.b64encode(b"monitor:s3cret").decode()
        bad = "Basic " + base64.b64encode(b"monitor:guess").decode()
        assert fetch(url, context=tls)[0] == 401
        assert fetch(url, {"Authorization": bad}, context=tls)[0] == 401
        status, body = fetch(url, {"Authorization": good}, context=tls)
        assert status == 200 and "gatewayd_build_info{" in body
        with pytest.raises((ConnectionResetError, urllib.error.URLError)):  # TLS port, plain HTTP
            fetch(url.replace("https", "http"), {"Authorization": good})
    finally:
        handle.close()


def test_attach_is_once_per_gateway_and_close_stops_serving(gateway: Gateway) -> None:
    async def main() -> None:
        first = metrics.attach(gateway)
        assert metrics.attach(gateway) is first
        assert first.server is not None
        port = first.server.port
        assert gateway.listeners.count(first.counters) == 1
        first.close()
        first.close()  # twice is harmless (the runtime and a wrapper may both close)
        assert first.counters not in gateway.listeners
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            pass

    asyncio.run(main())


def test_a_taken_port_leaves_the_daemon_running_without_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = ms.make_gateway(tmp_path, detectors=1, listen=f"127.0.0.1:{port}")
        try:
            handle = metrics.attach(gw)
            assert handle.server is None
            assert "cannot listen" in caplog.text
            ms.heartbeat(gw, "smoke-1")
            assert b'gatewayd_smoke_missing{device="smoke-1"} 0.0' in handle.exposition()
            handle.close()
        finally:
            ms.close_gateway(gw)


def test_a_stuck_event_loop_fails_the_scrape_instead_of_hanging_it(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics, "LOOP_TIMEOUT", 0.3)
    got: list[tuple[int, float]] = []

    def scrape_soon(url: str) -> None:
        time.sleep(0.1)  # the loop is asleep in time.sleep by now
        t0 = time.monotonic()
        got.append((fetch(url)[0], time.monotonic() - t0))

    async def main() -> None:
        handle = metrics.attach(gateway)
        assert handle.server is not None
        scraper = threading.Thread(target=scrape_soon, args=(handle.server.url,))
        scraper.start()
        time.sleep(1.0)  # a blocked event loop
        await asyncio.to_thread(scraper.join, 5)
        handle.close()

    with caplog.at_level("WARNING", "gatewayd.metrics"):
        asyncio.run(main())
    [(status, took)] = got
    assert status == 500
    assert took < 0.8
    assert "scrape failed: the event loop did not answer within 0.3 s" in caplog.text


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus"
)
def test_running_daemon_scrape_passes_promtool(tmp_path: Path, broker: Broker) -> None:
    receiver = EmulatorThread(tmp_path / "srb433")
    port = free_port()
    body = f'[metrics]\nlisten = "127.0.0.1:{port}"\n\n' + ms.site_body(
        chargers=0, detectors=2
    ).replace("/dev/null", receiver.rx.path)
    daemon = Daemon(make_site(tmp_path, broker.url, body))
    daemon.start()
    try:
        receiver.call(receiver.rx.detector("1A2B0001").heartbeat(2950, -58))
        url = f"http://127.0.0.1:{port}/metrics"

        def ready() -> str | None:
            text = fetch(url)[1]
            ok = (
                "gatewayd_broker_connected 1.0" in text
                and 'battery_volts{device="smoke-1"}' in text
            )
            return text if ok else None

        s = parse(wait_until(ready, 10, "a scrape with the broker up and smoke-1 heard"))
        assert value(s, "gatewayd_build_info", version="0.1.0", gateway_id="gw-test") == 1
        assert value(s, "gatewayd_receiver_up", bus="smoke-rx") == 1
        assert value(s, "gatewayd_bus_up", bus="smoke-rx", driver="serial") == 1
        assert value(s, "gatewayd_device_up", device="smoke-1", kind="smoke") == 1
        assert value(s, "gatewayd_device_battery_volts", device="smoke-1") == 2.95
        assert value(s, "gatewayd_smoke_rssi_dbm", device="smoke-1") == -58
        assert value(s, "gatewayd_broker_connects_total") == 1
        # The receiver's driver counts what it heard: the heartbeat and its PING answers.
        assert value(s, "gatewayd_bus_requests_total", bus="smoke-rx") >= 2  # type: ignore[operator]
        assert value(s, "gatewayd_bus_errors_total", bus="smoke-rx") == 0
        assert value(s, "gatewayd_device_last_seen_age_seconds", device="smoke-1") < 10  # type: ignore[operator]
        text = fetch(url)[1]
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        daemon.stop()
        receiver.close()


def test_exposition_means_what_prometheus_clients_own_says(tmp_path: Path) -> None:
    """The fast text exposition against prometheus_client's generate_latest over the same
    families, with label values and help that need escaping: the very same text, and again
    on a second scrape (label texts from the cache)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from gatewayd.metrics.families import build
    from gatewayd.metrics.text import TextFormat

    gw = ms.make_gateway(tmp_path, chargers=3, detectors=4, locks=2)
    try:
        ms.fill(gw)
        odd = GaugeMetricFamily("gatewayd_odd", "help with \\ and\nnewline", labels=["room"])
        odd.add_metric(['3"02\\b\nx'], 1.5)
        odd.add_metric(["大厅"], float("inf"))
        total = CounterMetricFamily("gatewayd_odd_things", "a counter", labels=["k"])
        total.add_metric(["a"], 7, created=1700000000.0)
        families = [*build(gw.snapshot(), EventCounters(gw.families, gw.family_of)), odd, total]

        class Static:
            def collect(self) -> list:
                return families

        registry = CollectorRegistry()
        registry.register(Static())  # type: ignore[arg-type]
        ours = TextFormat()
        theirs = generate_latest(registry).decode()
        first, second = ours.exposition(registry).decode(), ours.exposition(registry).decode()
    finally:
        ms.close_gateway(gw)

    assert first == theirs  # line for line: help, types, samples, escaping
    assert second == first  # the remembered label texts say the same
    assert len(parse(first)) > 50
    assert value(parse(first), "gatewayd_odd", room='3"02\\b\nx') == 1.5


def test_fire_mode_cuts_are_counted_as_fire_not_unknown() -> None:
    """Defect 5: the fire linkage's batched cut (one broadcast e-stop, then each pile's) was
    counted with reason="unknown": its events did not say which rule asked."""
    from firmware_stubs.ebc_pile import EbcEmulator, Pile
    from gatewayd.model import Action
    from tests.charger_harness import RulesLoop, on_emulator, running

    piles = [Pile(unit=u, ports_n=4) for u in (1, 2)]
    for p in piles:
        p.plug(1)
    counters = charger_counters()

    async def body(emu: EbcEmulator, bus: dict) -> None:
        loop = RulesLoop()
        async with running(loop, bus, {"pile-1": 1, "pile-2": 2}) as driver:
            await loop.wait_for("charger.port_started", count=2)
            batch = [Action(d, "all_off", reason="fire: smoke-301", origin="fire") for d in
                     ("pile-1", "pile-2")]  # fmt: skip
            await driver.execute_batch(batch)
        for event in loop.of_type("charger.port_cut"):
            counters(event)

    on_emulator(body, piles, "rtu", {"fast_seconds": 0.2})
    cuts = {d: counters.tally.of("cuts", d) for d in ("pile-1", "pile-2")}
    assert cuts == {"pile-1": {"fire": 1}, "pile-2": {"fire": 1}}
    assert not any(port.relay for p in piles for port in p.ports)
