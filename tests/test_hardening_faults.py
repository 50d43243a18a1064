"""Hardening: faults around the gateway, each tested for what the gateway does.

The broker killed with SIGKILL; the broker's TLS certificate from the wrong CA or expired; the
disk full; the data directory read-only; the clock jumping; the daemon itself killed with
SIGKILL at random moments of a burst. Real mosquitto, real daemon, real files and mounts (the
mount tests need root and are skipped with the reason where mounting is not permitted).

Unplugged receivers, flaky piles and locks that refuse connections are in
tests/test_hardening_devices.py; the command gate under clock skew in test_hardening_gate.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gatewayd.driver import DeviceConfig
from gatewayd.model import TICK, Event
from gatewayd.uplink.lanes import LANES
from gatewayd.uplink.segments import list_segments, scan
from rules.charger import FullRule, SessionCapRule
from rules.engine import World
from rules.smoke import SmokeRule
from tests.hardening_support import (
    Pki,
    TlsBroker,
    TlsProbe,
    control,
    control_env,
    plugin_env,
    remount_ro,
    tmpfs,
    write_site,
)
from tests.harness import REPO, Broker, Daemon, Probe, Site, free_port, make_site, wait_until

YEAR = 365 * 86400.0
T_2025 = 1_763_798_400.0


def events_of(probe: Probe, site: Site) -> list[dict[str, Any]]:
    out = []
    for m in probe.on(f"{site.root}/events/+"):
        try:
            out.append(m.json())
        except ValueError:
            continue
    return out


def emitted_ids(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def burst_bus(log: Path, events: int, **settings: Any) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in settings.items())
    return f'[[buses]]\nname = "gen"\ndriver = "burst"\nevents = {events}\nlog = "{log}"\n{extra}\n'


# -- the broker -----------------------------------------------------------------------------------


def test_broker_killed_with_sigkill_events_of_the_outage_arrive_after_restart(
    tmp_path: Path, broker: Broker
) -> None:
    log = tmp_path / "emitted"
    site = make_site(tmp_path, broker.url, burst_bus(log, 60, batch=10, interval=0.05, delay=1.2))
    daemon = Daemon(site, env=plugin_env(tmp_path, site))
    daemon.start()
    try:
        assert broker.proc is not None
        broker.proc.kill()  # no goodbye to anyone
        broker.proc.wait(5)
        broker.proc = None
        wait_until(lambda: "broker connection lost" in daemon.output(), 5, "the loss noticed")
        wait_until(lambda: len(emitted_ids(log)) == 60, 10, "the burst, broker dead")
        assert control(site.dir / "control.sock", {"cmd": "status"})["outbox_depth"] >= 60
        broker.start()
        probe = Probe(broker.port)
        try:
            wanted = set(emitted_ids(log))
            wait_until(
                lambda: wanted <= {e["id"] for e in events_of(probe, site)}, 15, "the backlog"
            )
            status = probe.wait(f"{site.root}/status", lambda s: s["online"], timeout=5)
            assert status["online"] is True
            cmd = site.command(site.gateway_id, "ping")
            probe.publish(f"{site.root}/cmd", json.dumps(cmd))
            result = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])
            assert result["code"] == "ok"
        finally:
            probe.close()
        assert daemon.alive
    finally:
        daemon.stop()


# -- TLS: the broker's certificate is wrong, then fixed -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("wrong_ca", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
    ],
    ids=["wrong-ca", "expired"],
)
def test_bad_broker_certificate_is_refused_rules_keep_running_reconnects_when_fixed(
    tmp_path: Path, fault: str, why: str
) -> None:
    pki = Pki(tmp_path / "pki")
    good = pki.issue("127.0.0.1")
    if fault == "wrong_ca":
        bad = Pki(tmp_path / "rogue", "rogue-ca").issue("127.0.0.1")
    else:
        bad = pki.issue("127.0.0.1", start="20200101000000Z", end="20200201000000Z")
    broker = TlsBroker(tmp_path, pki.ca, *bad)
    broker.start()
    body = (
        '[[buses]]\nname = "rx"\ndriver = "pulse"\ndelay = 0.5\n\n'
        '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "rx"\nroom = "301"\n'
    )
    site = write_site(tmp_path, broker.url, body, mqtt_extra=f'ca_file = "{pki.ca}"\n')
    daemon = Daemon(site, env=plugin_env(tmp_path, site))
    daemon.start(wait_ready=False)
    sock = site.dir / "control.sock"
    platform: TlsProbe | None = None
    try:
        wait_until(lambda: why in daemon.output(), 10, f"a log line saying {why!r}")
        line = next(x for x in daemon.output().splitlines() if why in x)
        assert "WARNING gatewayd.uplink.link: broker 127.0.0.1:" in line
        assert "certificate verify failed" in line and "retrying in" in line
        # Safety without the platform: the smoke alarm still puts the house in fire mode.
        wait_until(lambda: control(sock, {"cmd": "status"})["fire_mode"], 10, "fire mode")
        status = control(sock, {"cmd": "status"})
        assert status["broker_connected"] is False
        assert "connected to broker" not in daemon.output()
        assert "Traceback" not in daemon.output()
        # Fixed on the broker's side (a certificate from the CA the gateway trusts): the
        # gateway reconnects by itself and tells the platform everything.
        broker.restart(*good)
        platform = TlsProbe(broker.port, pki.ca, subscribe=f"{site.root}/#")
        st = platform.wait(f"{site.root}/status", lambda s: s.get("online"), 15)
        assert st["fire_mode"] is True
        alarms = platform.wait(
            f"{site.root}/alarms",
            lambda a: "gateway.fire_mode" in {x["type"] for x in a["active"]},
            10,
        )
        assert "smoke.alarm" in {x["type"] for x in alarms["active"]}
        assert f"connected to broker 127.0.0.1:{broker.port} (TLS)" in daemon.output()
        assert daemon.alive
    finally:
        if platform is not None:
            platform.close()
        daemon.stop()
        broker.stop()


# -- the disk -------------------------------------------------------------------------------------


def fill(directory: Path) -> None:
    """Fill the file system under ``directory`` to the last block."""
    try:
        with open(directory / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


HOUSE = (
    '[[buses]]\nname = "house"\ndriver = "recorder"\nlog = "{actions}"\n\n'
    '[[buses]]\nname = "rx"\ndriver = "pulse"\ndelay = {delay}\n\n'
    '[[devices]]\nid = "door-main"\nkind = "door_lock"\nbus = "house"\nescape_route = true\n\n'
    '[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "house"\n\n'
    '[[devices]]\nid = "smoke-301"\nkind = "smoke"\nbus = "rx"\nroom = "301"\n\n'
    # Two detectors in alarm: a confirmed fire, so the escape door is released too.
    '[[devices]]\nid = "smoke-302"\nkind = "smoke"\nbus = "rx"\nroom = "302"\n\n'
)


def test_disk_full_outbox_full_alarm_fire_linkage_still_acts_events_delivered_later(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "emitted"
    actions = tmp_path / "actions.jsonl"
    with tmpfs(data, "256k"):
        broker = Broker(tmp_path)  # down for now: the outbox has to write
        body = HOUSE.format(actions=actions, delay=2.5)
        body += burst_bus(log, 400, batch=50, interval=0.05, pad=200, delay=0.5)
        site = make_site(tmp_path, broker.url, body)
        daemon = Daemon(site, env=plugin_env(tmp_path, site))
        daemon.start(wait_ready=False)
        sock = site.dir / "control.sock"
        try:
            wait_until(lambda: "ready:" in daemon.output(), 10, "ready")
            fill(data)
            wait_until(lambda: len(emitted_ids(log)) == 400, 10, "the burst")
            wait_until(lambda: "outbox cannot write" in daemon.output(), 5, "the disk error")
            # The smoke alarm on a full disk: chargers cut, escape door released all the same.
            wait_until(lambda: actions.exists() and len(actions.read_text().splitlines()) >= 2,
                       5, "the fire linkage")  # fmt: skip
            done = {tuple(json.loads(x)[:2]) for x in actions.read_text().splitlines()}
            assert {("pile-1", "all_off"), ("door-main", "hold_open")} <= done
            assert daemon.alive, daemon.output()[-600:]
            status = control(sock, {"cmd": "status"})
            assert status["fire_mode"] is True
            alarms = {a["type"] for a in control(sock, {"cmd": "alarms"})["alarms"]}
            assert {"gateway.outbox_full", "gateway.fire_mode", "smoke.alarm"} <= alarms
            broker.start()
            probe = Probe(broker.port)
            try:
                wanted = set(emitted_ids(log))
                wait_until(
                    lambda: wanted <= {e["id"] for e in events_of(probe, site)}, 15, "delivery"
                )
                types = {e["type"] for e in events_of(probe, site)}
                assert "gateway.fire_mode" in types
            finally:
                probe.close()
            assert daemon.alive
        finally:
            if daemon.alive:
                daemon.stop()
            broker.stop()


def test_disk_full_commands_get_a_clear_answer_and_the_daemon_stops_cleanly(
    tmp_path: Path, broker: Broker
) -> None:
    data = tmp_path / "data"
    with tmpfs(data, "256k"):
        site = make_site(tmp_path, broker.url)
        daemon = Daemon(site, env=plugin_env(tmp_path, site))
        daemon.start()
        probe = Probe(broker.port)
        try:
            fill(data)
            cmd = site.command(site.gateway_id, "ping")
            probe.publish(f"{site.root}/cmd", json.dumps(cmd))
            answer = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])
            assert "internal error" not in answer["detail"]
            assert "Traceback" not in daemon.output()
        finally:
            probe.close()
            code = daemon.stop()
        assert code == 0, daemon.output()[-300:]


def run_gatewayd(site: Site, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", "run", "-c", str(site.config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "GATEWAYD_CONTROL_SOCKET": str(site.dir / "control.sock")},
        check=False,
    )


@pytest.mark.parametrize("populated", [False, True], ids=["empty", "after-a-run"])
def test_read_only_data_dir_rules_run_from_memory_and_say_so(
    tmp_path: Path, broker: Broker, populated: bool
) -> None:
    """Was a defect: an SD card turned read-only (how they usually fail) kept the daemon from
    starting, so an overheating port stayed powered. Now the daemon starts, the rules act,
    `gateway.storage_failed` says which stores fail, and remote commands are refused (their
    ids cannot be made durable)."""
    data = tmp_path / "data"
    actions = tmp_path / "actions.jsonl"
    with tmpfs(data, "256k"):
        site = make_site(tmp_path, broker.url, HOUSE.format(actions=actions, delay=1.0))
        if populated:  # what a previous run leaves
            (data / "outbox").mkdir(mode=0o750)
            (data / "audit").mkdir(mode=0o750)
            for f in ("audit/audit.log", "replay.log"):
                (data / f).touch(mode=0o600)
            (data / "state.json").write_text('{"alarms": {}}')
        remount_ro(data)
        daemon = Daemon(site, env=plugin_env(tmp_path, site))
        daemon.start()
        probe = Probe(broker.port)
        try:
            wait_until(lambda: actions.exists() and len(actions.read_text().splitlines()) >= 2,
                       10, "the fire linkage")  # fmt: skip
            done = {tuple(json.loads(x)[:2]) for x in actions.read_text().splitlines()}
            assert {("pile-1", "all_off"), ("door-main", "hold_open")} <= done
            def failing(body: dict[str, Any]) -> set[str]:
                return {
                    part
                    for a in body["active"]
                    if a["type"] == "gateway.storage_failed" and a["severity"] == "critical"
                    for part, st in a["parts"].items()
                    if st == "active"
                }

            # The alarm state, the replay cache and the audit log cannot be written.
            probe.wait(f"{site.root}/alarms", lambda b: {"state", "replay", "audit"} <= failing(b))
            status = control(site.dir / "control.sock", {"cmd": "status"})
            assert status["fire_mode"] is True
            cmd = site.command("pile-1", "port_off", {"port": 1})
            probe.publish(f"{site.root}/cmd", json.dumps(cmd))
            answer = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])
            assert answer["code"] == "storage_failed"
            assert "Traceback" not in daemon.output()
        finally:
            probe.close()
            code = daemon.stop()
    assert code == 0, daemon.output()[-600:]


def test_secret_files_readable_by_others_stop_the_start_with_the_fix(tmp_path: Path) -> None:
    site = make_site(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    key = tmp_path / "command.key"
    key.chmod(0o644)
    done = run_gatewayd(site)
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in out
    assert f"chmod 600 {key}" in out and "readable by group or others" in out
    assert site.key.hex() not in out


# -- the clock --------------------------------------------------------------------------------


def smoke_world(*ids: str) -> World:
    return World("gw", {d: DeviceConfig(d, "smoke", "rx", {"address": "1A2B3C4D"}) for d in ids})


def tick(rule: Any, world: World, now: float) -> list[Event]:
    world.now = now
    out = rule.on_event(Event("gw", TICK, ts=now), world)
    return [] if out is None else list(out.events)


@pytest.mark.parametrize(
    ("boot", "jump"),
    [(0.0, T_2025), (T_2025, T_2025 + YEAR), (T_2025, T_2025 - YEAR)],
    ids=["1970-then-ntp", "plus-a-year", "minus-a-year"],
)
def test_clock_jump_does_not_flag_every_detector_and_detection_still_works(
    boot: float, jump: float
) -> None:
    rule, world = SmokeRule({}), smoke_world("smoke-301", "smoke-302")
    for dev in world.devices:  # heard once, with the clock as it was at boot
        rule.on_event(Event(dev, "smoke.heartbeat", ts=boot + 5), world)
    seen: list[Event] = []
    for t in range(0, 600, 60):
        seen += tick(rule, world, boot + t)
    for t in range(0, 3 * 3600, 60):  # the jump, then three quiet hours: not missing yet
        seen += tick(rule, world, jump + t)
    assert seen == []
    rule.on_event(Event("smoke-301", "smoke.heartbeat", ts=jump + 3 * 3600), world)
    for t in range(3 * 3600, 4 * 3600 + 120, 60):  # smoke-302 stays silent past 3 periods
        seen += tick(rule, world, jump + t)
    assert [(e.device, e.type) for e in seen] == [("smoke-302", "smoke.missing")]


@pytest.mark.parametrize(
    ("rule_class", "state", "power"),
    [(SessionCapRule, "charging", 200), (FullRule, "full", 12)],
    ids=["session-cap", "full"],
)
def test_clock_jump_does_not_cut_charging_sessions(
    rule_class: Any, state: str, power: float
) -> None:
    """Was a defect (fixed in e72a1f5): the timers cut every session at the NTP step."""
    rule = rule_class({})
    port = {"port": 1, "state": state, "relay": True, "power_w": power, "temperature_c": 30.0,
            "sensor_fault": False, "energy_wh": 5, "fault": "none"}  # fmt: skip
    data = {"source": "ports", "ports": [port], "cabinet_c": 30.0, "status_bits": 0}
    world = World("gw", {}, now=120.0)  # booted in 1970
    assert not rule.on_event(Event("pile-1", "charger.sample", data=data, ts=120.0), world).actions
    cuts = []
    for now in (121.0, T_2025, T_2025 + 1):  # NTP steps the clock to today
        world.now = now
        cuts += rule.on_event(Event("gw", TICK, ts=now), world).actions
    assert cuts == []
    # The timer still runs: the cut comes once its limit has really passed, jump not counted.
    limit = rule.limit_seconds()
    cut_at = None
    now = T_2025 + 1
    while cut_at is None and now < T_2025 + 2 * limit:
        now += 60.0
        world.now = now
        if rule.on_event(Event("gw", TICK, ts=now), world).actions:
            cut_at = now
    assert cut_at is not None
    assert limit - 120 <= cut_at - T_2025 <= limit + 120


# -- the daemon killed at random moments ----------------------------------------------------------


def stored_event_ids(data: Path) -> set[str]:
    """Ids of the events the outbox had on disk (committed and fsynced)."""
    out: set[str] = set()
    d = data / "outbox"
    for lane in LANES:
        for path in list_segments(str(d), lane) if d.exists() else []:
            for rec, _ in scan(path):
                if "/events/" in rec.topic:
                    out.add(json.loads(rec.payload)["id"])
    return out


def test_sigkill_at_random_moments_loses_no_stored_event(tmp_path: Path, broker: Broker) -> None:
    seed = int(os.environ.get("GATEWAYD_TEST_SEED") or int.from_bytes(os.urandom(4), "big"))
    rnd = random.Random(seed)
    log = tmp_path / "emitted"
    site = make_site(tmp_path, broker.url, burst_bus(log, 1500, batch=25, interval=0.01))
    daemon = Daemon(site, env=plugin_env(tmp_path, site))
    probes: list[Probe] = []
    stored: set[str] = set()
    kills = []
    try:
        for phase in range(3):
            up = phase % 2 == 1  # outage, broker up, outage
            if up:
                broker.start()
                probes.append(Probe(broker.port))
            else:
                broker.stop()
            before = len(emitted_ids(log))
            daemon.start(wait_ready=False)
            wait_until(lambda b=before: len(emitted_ids(log)) > b, 10, "the burst to begin")
            # The first outage lasts past a commit window or two (something is stored for
            # sure); the other kills come at any moment.
            time.sleep(rnd.uniform(0.25, 0.6) if phase == 0 else rnd.uniform(0.0, 0.6))
            daemon.stop(signal.SIGKILL)
            kills.append(len(emitted_ids(log)) - before)
            on_disk = stored_event_ids(site.dir / "data")
            print(f"phase {phase}: emitted {kills[-1]}, on disk {len(on_disk - stored)} new")
            stored |= on_disk
            if up:
                probes[-1].close()
        broker.start()
        probes.append(Probe(broker.port))
        before_last = set(emitted_ids(log))
        daemon.start()  # a last run drains everything

        def received() -> set[str]:
            return {e["id"] for p in probes for e in events_of(p, site)}

        try:
            wait_until(lambda: stored <= received(), 30, f"every stored event (seed {seed})")
        except AssertionError:
            missing = sorted(stored - received())
            raise AssertionError(f"seed {seed}: {len(missing)} stored events never arrived, "
                                 f"e.g. {missing[:5]}; kills {kills}") from None  # fmt: skip
        time.sleep(0.5)
        lost = before_last - received()
        print(f"\nseed {seed}: emitted before each kill {kills}, stored {len(stored)}, "
              f"never delivered {len(lost)} (emitted within a commit window of a kill)")  # fmt: skip
        assert stored, "the kills happened before anything was stored: nothing was tested"
        assert not (lost & stored)
    finally:
        for p in probes:
            p.close()
        if daemon.alive:
            daemon.stop()


def test_stop_with_an_events_follower_attached_logs_no_traceback(
    tmp_path: Path, broker: Broker
) -> None:
    site = make_site(tmp_path, broker.url)
    daemon = Daemon(site, env=control_env(site))
    daemon.start()
    with socket.socket(socket.AF_UNIX) as follower:
        follower.settimeout(5)
        follower.connect(str(site.dir / "control.sock"))
        follower.sendall(b'{"cmd": "events"}\n')
        assert json.loads(follower.recv(4096).split(b"\n")[0])["streaming"] == "events"
        code = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.output()
