"""Pushed metrics, end to end with real peers: a running gateway with ``[metrics]
push_seconds`` publishes to a real mosquitto; two `gatewayd-relay exporter` processes serve
what it pushed; a real Prometheus scrapes them with the example config's push job
(monitoring/prometheus.yml) and evaluates the unchanged rules.

What a user of the monitoring centre cares about: the exporter shows the gateway's own
series with its values (what its /metrics serves), labelled as a scrape would be; a fire on
a pushing gateway fires FireAlarmActive with its village and township; a gateway that stops
pushing goes stale (up 0, GatewayDown pending) and its series stop.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatewayd_relay.exporter import Exporter as RelayExporter
from prometheus_client.parser import text_string_to_metric_families

from firmware_stubs.lifetime import tied_to_parent
from gatewayd.metrics.push import Encoder, encode, number
from tests.harness import REPO, Broker, Daemon, Probe, free_port, make_site, wait_until
from tests.harness import ReceiverThread as EmulatorThread
from tests.test_monitoring import PileThread, Prometheus

GW = "xz-liushu-017"
PLACE = {"village": "柳墅村", "township": "新庄镇"}
#: Labels the exporter (not the gateway) puts on every series of a gateway.
OURS = {"job", "instance", "gateway", "village", "township"}
#: Gauges that move up and down by themselves between two looks (a pushed value need not lie
#: between the two scrapes around it): within 20 %, or the seconds between the looks.
MOVING = {
    "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
    "gatewayd_bus_utilisation_ratio", "gatewayd_event_loop_lag_seconds",
    "gatewayd_outbox_oldest_age_seconds", "gatewayd_device_last_seen_age_seconds",
}  # fmt: skip

Series = dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float | None]]


def parse(text: str, gateway: str | None = None) -> Series:
    """name+labels -> (value, timestamp); with ``gateway``: that gateway's series only, without
    the labels the exporter adds."""
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = dict(s.labels)
            if gateway is not None:
                if labels.get("gateway") != gateway:
                    continue
                labels = {k: v for k, v in labels.items() if k not in OURS}
            ts = float(s.timestamp) if s.timestamp is not None else None
            out[(s.name, tuple(sorted(labels.items())))] = (s.value, ts)
    return out


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


class Exporter:
    """`gatewayd-relay exporter` in a subprocess."""

    def __init__(self, workdir: Path, broker: Broker, name: str, inventory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.log = workdir / f"{name}.log"
        args = [sys.executable, "-m", "gatewayd_relay", "exporter", "--broker", broker.url,
                "--listen", f"127.0.0.1:{self.port}", "--inventory", str(inventory),
                "--stale-after", "4"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(tied_to_parent(args), stdout=log, stderr=log, cwd=REPO)

    def text(self) -> str:
        return get(self.url)

    def series(self, gateway: str) -> Series:
        return parse(self.text(), gateway)

    def up(self, gateway: str) -> float | None:
        try:
            got = parse(self.text()).get(("gatewayd_push_up", _ours(gateway)))
        except OSError:
            return None
        return got[0] if got else None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _ours(gateway: str) -> tuple[tuple[str, str], ...]:
    place = PLACE if gateway == GW else {}
    labels = {"job": "gatewayd", "instance": gateway, "gateway": gateway, **place}
    return tuple(sorted(labels.items()))


def subscribed(exporter: Exporter, probe: Probe, n: list[int]) -> bool:
    """Publish a one-sample keyframe of a made-up gateway; true once the exporter serves it
    (so it is subscribed before the gateway under test pushes its first keyframe)."""
    n[0] += 1
    frame = Encoder(60).frame([("probe_value", "gauge", "", ())], [number(1)], time.time())
    frame["n"] = n[0]
    probe.publish("pingan/v1/probe-gw/metrics", encode(frame), qos=0)
    time.sleep(0.2)
    return exporter.up("probe-gw") == 1


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.csv"
    path.write_text(f"gateway_id,address,village,township\n{GW},,柳墅村,新庄镇\n")
    return path


@pytest.fixture
def exporters(tmp_path: Path, broker: Broker, inventory: Path) -> Iterator[list[Exporter]]:
    both = [Exporter(tmp_path, broker, f"exporter-{i}", inventory) for i in (1, 2)]
    probe = Probe(broker.port, "pingan/v1/none")
    n = [0]
    try:
        for e in both:
            wait_until(lambda e=e: subscribed(e, probe, n), 20, "the exporter to subscribe")
        yield both
    finally:
        probe.close()
        for e in both:
            e.stop()


@pytest.fixture
def pile() -> Iterator[PileThread]:
    p = PileThread()
    yield p
    p.close()


def gateway_body(metrics_port: int, receiver: EmulatorThread, pile: PileThread) -> str:
    return (
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\npush_seconds = 1\n\n'
        f'[[buses]]\nname = "smoke-rx"\ndriver = "serial"\nport = "{receiver.rx.path}"\n\n'
        f'[[buses]]\nname = "rs485"\ndriver = "modbus"\nhost = "127.0.0.1"\ntcp_port = {pile.port}\n'
        "fast_seconds = 0.2\nslow_seconds = 1.0\n\n"
        '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "smoke-rx"\naddress = "1A2B3C4D"\nroom = "301"\n\n'
        '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485"\nunit = 1\n'
    )


def same(before: Series, pushed: Series, after: Series, seconds: float) -> list[str]:
    """What differs between the pushed series and the gateway's own scrapes just before and
    just after the push was taken (``seconds`` apart): the same series, each pushed value
    what the endpoint served then (between the two, or as a moving gauge moves)."""
    pushed = {k: v for k, v in pushed.items() if not k[0].startswith("gatewayd_push_")}
    wrong = [f"missing {k}" for k in before.keys() - pushed.keys()]
    wrong += [f"extra {k}" for k in pushed.keys() - before.keys()]
    for key in before.keys() & pushed.keys():
        a, b, c = before[key][0], pushed[key][0], after.get(key, before[key])[0]
        if min(a, c) <= b <= max(a, c) or all(map(math.isnan, (a, b))):
            continue
        if key[0] in MOVING and (abs(a - b) <= seconds or abs(a - b) <= 0.2 * abs(a)):
            continue
        wrong.append(f"{key}: own {a} then {c}, pushed {b}")
    return wrong


def test_exporter_serves_what_the_gateway_serves_and_marks_it_stale(
    tmp_path: Path,
    broker: Broker,
    exporters: list[Exporter],
    smoke_receiver: EmulatorThread,
    pile: PileThread,
) -> None:
    metrics_port = free_port()
    site = make_site(tmp_path, broker.url, gateway_body(metrics_port, smoke_receiver, pile), GW)
    watch = Probe(broker.port, f"pingan/v1/{GW}/metrics")
    daemon = Daemon(site)
    daemon.start()
    try:
        one = exporters[0]
        wait_until(lambda: one.series(GW), 15, "the gateway's pushed series")
        idle = (
            "gatewayd_charger_port_state",
            (("device", "pile-1"), ("port", "1"), ("state", "idle")),
        )
        wait_until(lambda: one.series(GW).get(idle), 15, "the pile read")
        # The same series, values within one push period, as the gateway's own endpoint.
        own_url = f"http://127.0.0.1:{metrics_port}/metrics"

        def stamp(series: Series) -> float:
            return max(ts or 0.0 for _, ts in series.values())

        def agree() -> list[str]:
            t0 = time.time()
            before = parse(get(own_url))
            pushed = wait_until(lambda: (p := one.series(GW)) and stamp(p) > t0 and p, 5, "a push")
            after = parse(get(own_url))
            return same(before, pushed, after, time.time() - t0)

        for _ in range(20):  # a push may land between the two looks
            if not (wrong := agree()):
                break
            time.sleep(0.5)
        assert not wrong, wrong
        # Every sample carries the gateway's clock (within the push period of ours), and the
        # labels a scrape of it would have had.
        text = one.text()
        for (name, labels), (_, ts) in parse(text).items():
            if dict(labels).get("gateway") == GW and not name.startswith("gatewayd_push_"):
                assert ts is not None and abs(ts - time.time()) < 5, name
                assert _ours(GW) == tuple(sorted((k, v) for k, v in labels if k in OURS)), name
        # Both replicas serve the same samples of the gateway.
        wait_until(lambda: exporters[1].series(GW) == one.series(GW), 10, "the replicas to agree")
        # What went over the broker: QoS 0, not retained.
        sent = watch.on(f"pingan/v1/{GW}/metrics")
        assert sent and not any(m.retain for m in sent)

        # A fire: the pushed series show it as the endpoint does.
        smoke_receiver.call(smoke_receiver.rx.detector("1A2B3C4D").alarm(90))
        alarm = ("gatewayd_smoke_alarm_active", (("device", "smoke-301"), ("room", "301")))
        wait_until(lambda: one.series(GW).get(alarm, (0.0, None))[0] == 1, 10, "the alarm pushed")

        # The gateway dies: stale within --stale-after, its series gone.
        assert one.up(GW) == 1
        daemon.kill()
        wait_until(lambda: one.up(GW) == 0, 10, "the gateway marked stale")
        last = watch.on(f"pingan/v1/{GW}/metrics")[-1].at
        assert time.monotonic() - last > 3.5  # --stale-after 4: not before its frames stopped
        assert list(one.series(GW)) == [("gatewayd_push_up", ())]  # its samples are gone
        assert exporters[1].up(GW) == 0
    finally:
        watch.close()
        if daemon.alive:
            daemon.stop()


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus missing: apt-get install prometheus"
)
def alert(prom: Prometheus, name: str, state: str) -> dict[str, Any] | None:
    """The alert ``name`` of the gateway under test (the probe's gateway goes stale too)."""
    time.sleep(0.1)
    for a in prom.api("alerts")["alerts"]:
        labels = a["labels"]
        if (labels["alertname"], labels.get("gateway"), a["state"]) == (name, GW, state):
            return dict(a)
    return None


def test_prometheus_alerts_on_a_pushing_gateway_as_on_a_scraped_one(
    tmp_path: Path,
    broker: Broker,
    exporters: list[Exporter],
    smoke_receiver: EmulatorThread,
    pile: PileThread,
) -> None:
    # The example config's push job, pointed at both replicas.
    example = (REPO / "monitoring" / "prometheus.yml").read_text()
    job = example.split("# push:begin\n")[1].split("  # push:end")[0]
    targets = ", ".join(f'"127.0.0.1:{e.port}"' for e in exporters)
    job = job.replace('"127.0.0.1:9109"', targets)
    assert targets in job and "honor_labels: true" in job
    metrics_port = free_port()
    site = make_site(tmp_path, broker.url, gateway_body(metrics_port, smoke_receiver, pile), GW)
    daemon = Daemon(site)
    daemon.start()
    prom = Prometheus(tmp_path, None, job)
    try:
        wait_until(prom.ready, 20, "prometheus to be ready")
        here = (
            f'{{job="gatewayd",gateway="{GW}",instance="{GW}",village="柳墅村",township="新庄镇"}}'
        )
        wait_until(lambda: prom.value(f"up{here}") == 1, 20, "up of the pushing gateway")
        wait_until(lambda: prom.value(f"gatewayd_broker_connected{here}") == 1, 10, "its series")
        # One series per gateway however many replicas are scraped.
        assert len(prom.api("query", query=f"up{here}")["result"]) == 1
        roll_up = 'township:gatewayd_up:sum{township="新庄镇"}'
        wait_until(lambda: prom.value(roll_up) == 1, 10, "the roll-up to count it")

        smoke_receiver.call(smoke_receiver.rx.detector("1A2B3C4D").alarm(90))
        fire = wait_until(lambda: alert(prom, "FireAlarmActive", "firing"), 20, "the fire alert")
        assert {k: fire["labels"][k] for k in ("device", "room", "gateway", "instance", "village",
                                               "township", "job")} == {
            "device": "smoke-301", "room": "301", "gateway": GW, "instance": GW,
            "village": "柳墅村", "township": "新庄镇", "job": "gatewayd",
        }  # fmt: skip

        daemon.kill()
        wait_until(lambda: prom.value(f"up{here}") == 0, 20, "up 0 once it stopped pushing")
        down = wait_until(lambda: alert(prom, "GatewayDown", "pending"), 10, "GatewayDown pending")
        assert down["labels"]["village"] == "柳墅村"
        # Its last samples, stamped with its clock, stay visible for Prometheus's look-back
        # (5 min; no staleness marker for timestamped samples): docs/monitoring.md says so.
        wait_until(lambda: prom.value(roll_up) == 0, 10, "the roll-up to count it down")
    finally:
        prom.stop()
        if daemon.alive:
            daemon.stop()
        log = (tmp_path / "prometheus.log").read_text(errors="replace")
        print(json.dumps([ln for ln in log.splitlines() if "level=warn" in ln][-5:]))


# -- the rules' unit tests on pushed series ---------------------------------------------------


def push_job() -> str:
    """The push job of the example Prometheus config (monitoring/prometheus.yml)."""
    example = (REPO / "monitoring" / "prometheus.yml").read_text()
    return example.split("# push:begin\n")[1].split("  # push:end")[0]


def renames(job: str) -> list[tuple[re.Pattern[str], str]]:
    """The job's metric_relabel_configs that rename a series (``target_label: __name__``)."""
    out = []
    for rule in job.split("metric_relabel_configs:")[1].split("- source_labels:")[1:]:
        keys = dict(re.findall(r"^\s+(\w+): (.+)$", rule, flags=re.M))
        if keys.get("target_label") == "__name__":
            out.append((re.compile(keys["regex"]), keys["replacement"]))
    return out


def pushed_shape(series: str, tmp: Path, rename: list[tuple[re.Pattern[str], str]]) -> str:
    """``series`` (a scraped gateway's, as the unit tests write it) as Prometheus stores it
    when it came through the exporter: the gateway's own labels in a keyframe, the
    exporter's exposition of it (with the inventory's village and township), then the push
    job's renames. The scrape's ``up`` is the exporter's gatewayd_push_up."""
    (fam,) = text_string_to_metric_families(series + " 1\n")
    (sample,) = fam.samples
    labels = dict(sample.labels)
    gid = labels["gateway"]
    inventory = tmp / "inventory.csv"
    inventory.write_text(
        f"gateway_id,village,township\n{gid},{labels.get('village', '')},"
        f"{labels.get('township', '')}\n"
    )
    exporter = RelayExporter("pingan/v1", inventory=str(inventory))
    if sample.name != "up":
        own = tuple(x for kv in sorted(labels.items()) if kv[0] not in OURS for x in kv)
        frame = Encoder(60).frame([(sample.name, "untyped", "", own)], [1], time.time())
        exporter.receive(f"pingan/v1/{gid}/metrics", encode(frame), time.time())
    name = sample.name if sample.name != "up" else "gatewayd_push_up"
    exposed = parse(exporter.exposition(time.time()).decode())
    (got,) = [labels for n, labels in exposed if n == name]
    for rx, replacement in rename:
        name = rx.sub(replacement, name) if rx.fullmatch(name) else name
    text = ",".join(f'{k}="{v}"' for k, v in got)
    return f"{name}{{{text}}}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_rule_unit_tests_pass_on_pushed_series(tmp_path: Path) -> None:
    """Every alert and roll-up test of monitoring/tests, its input series turned into what the
    exporter and the push job make of the same gateway's series: the rules need no change."""
    mon = REPO / "monitoring"
    shutil.copytree(mon / "rules", tmp_path / "rules")
    (tmp_path / "tests").mkdir()
    rename = renames(push_job())
    assert rename, "the push job renames gatewayd_push_up"
    changed = 0
    for test in sorted((mon / "tests").glob("*.yml")):
        text = test.read_text()

        def shaped(m: re.Match[str]) -> str:
            nonlocal changed
            pushed = pushed_shape(m.group(2), tmp_path, rename)
            changed += parse(pushed + " 1\n") != parse(m.group(2) + " 1\n")
            return f"{m.group(1)}'{pushed}'"

        text, n = re.subn(r"(- series: )'([^']+)'", shaped, text)
        assert n > 10, test.name
        (tmp_path / "tests" / test.name).write_text(text)
    out = subprocess.run(["promtool", "test", "rules", "alerts_test.yml", "rollups_test.yml"],
                         cwd=tmp_path / "tests", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert changed == 0, "the pushed series differ from the scraped ones"


# -- what goes on the wire: the contract, and the bytes ----------------------------------------


def test_a_houses_frames_follow_the_contract_and_stay_small(tmp_path: Path) -> None:
    """A house (a 12-port pile, 6 detectors, a lock, an evening's state) through the real
    collector and encoder: each frame validates against docs/contract/schemas/metrics.json
    (the topic routed by the AsyncAPI document), and a quiet minute's delta is tens of bytes."""
    import asyncio

    from gatewayd.metrics import serve
    from gatewayd.metrics.push import frames, series_of
    from tests.contract_support import problems, route
    from tests.metrics_site import close_gateway, fill, heartbeat, make_gateway

    async def run() -> list[bytes]:
        gw = make_gateway(tmp_path, chargers=1, detectors=6, locks=1)
        fill(gw)
        handle = serve(gw, "")
        enc, out = Encoder(60), []
        try:
            for i in range(3):
                keys, values = series_of(handle.registry)
                out.append(encode(enc.frame(keys, values, time.time() + 60 * i)))
                heartbeat(gw, "smoke-2", 2950 - i, -70)
        finally:
            handle.close()
            close_gateway(gw)
        return out

    payloads = asyncio.run(run())
    r, params = route(f"pingan/v1/{GW}/metrics")
    assert (r.channel, r.qos, r.retain, params) == ("metrics", 0, False, {"gateway": GW})
    for frame in frames(payloads):
        assert not problems(r.schema_file, frame), problems(r.schema_file, frame)
    key, *deltas = payloads
    assert len(key) < 1500 and all(len(d) < 150 for d in deltas), [len(p) for p in payloads]
