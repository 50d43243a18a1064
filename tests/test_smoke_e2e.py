"""Smoke alarms end to end: emulated receiver on a pty → the real daemon → real mosquitto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import gatewayd
from tests.harness import Broker, Daemon, Probe, Site, make_site, smoke_config, wait_until
from tests.harness import ReceiverThread as EmulatorThread

DETECTORS = {"smoke-301": "1A2B3C4D", "smoke-302": "1A2B3C4E"}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[EmulatorThread]:
    emu = EmulatorThread(tmp_path / "srb433", spacing=0.05)
    yield emu
    emu.close()


def smoke_site(tmp_path: Path, broker: Broker, receiver: EmulatorThread, rules: str = "") -> Site:
    return make_site(tmp_path, broker.url, smoke_config(receiver.rx.path, DETECTORS) + "\n" + rules)


@pytest.fixture
def smoke_daemon(tmp_path: Path, broker: Broker, receiver: EmulatorThread) -> Iterator[Daemon]:
    d = Daemon(smoke_site(tmp_path, broker, receiver))
    d.start()
    yield d
    if d.alive:
        d.stop()


def test_alarm_reported_once_with_contract_shape_then_cleared(
    smoke_daemon: Daemon, receiver: EmulatorThread, probe: Probe
) -> None:
    root = smoke_daemon.site.root
    det = receiver.rx.detector(DETECTORS["smoke-301"])
    receiver.call(det.alarm(90))  # three copies on the radio
    alarms = probe.wait(
        f"{root}/alarms", lambda b: any(a["type"] == "smoke.alarm" for a in b["active"])
    )
    [alarm] = [a for a in alarms["active"] if a["type"] == "smoke.alarm"]
    # A smoke alarm also puts the gateway in fire mode (rules/fire.py).
    assert {a["type"] for a in alarms["active"]} == {"smoke.alarm", "gateway.fire_mode"}
    assert {k: alarm[k] for k in ("id", "device", "type", "acked_by")} == {
        "id": "smoke-301/smoke.alarm",
        "device": "smoke-301",
        "type": "smoke.alarm",
        "acked_by": None,
    }
    assert abs(alarm["since"] - time.time()) < 10
    event = probe.wait(f"{root}/events/smoke-301", lambda e: e["type"] == "smoke.alarm")
    assert set(event) == {"id", "ts", "device", "room", "type", "severity", "data"}
    assert (event["device"], event["room"], event["severity"], event["data"]["density"]) == (
        "smoke-301",
        "301",  # where the responders go: the room the installer gave the detector
        "critical",
        90,
    )
    time.sleep(0.5)  # all three copies have long arrived
    copies = [m for m in probe.on(f"{root}/events/smoke-301") if m.json()["type"] == "smoke.alarm"]
    assert len(copies) == 1
    state = probe.wait(f"{root}/state/smoke-301", lambda s: s.get("alarm") == "smoke")
    assert state["ts"] > 0
    receiver.call(det.clear())
    probe.wait(f"{root}/events/smoke-301", lambda e: e["type"] == "smoke.cleared")
    # The detector's alarm ends; fire mode stays until a person resets it.
    probe.wait(
        f"{root}/alarms", lambda b: [a["type"] for a in b["active"]] == ["gateway.fire_mode"]
    )
    late = Probe(
        smoke_daemon_port(probe), f"{root}/state/smoke-301"
    )  # retained: a newcomer sees it
    try:
        assert late.wait(f"{root}/state/smoke-301")["alarm"] == "none"
    finally:
        late.close()


def smoke_daemon_port(probe: Probe) -> int:
    return int(probe.client._port)


def test_ack_alarm_command_marks_it_acknowledged(
    smoke_daemon: Daemon, receiver: EmulatorThread, probe: Probe
) -> None:
    site = smoke_daemon.site
    receiver.call(receiver.rx.detector(DETECTORS["smoke-302"]).alarm(120))
    probe.wait(
        f"{site.root}/alarms", lambda b: any(a["type"] == "smoke.alarm" for a in b["active"])
    )
    cmd = site.command(
        site.gateway_id, "ack_alarm", {"alarm": "smoke-302/smoke.alarm"}, user="grid-worker-3"
    )
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    assert probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"])["code"] == "ok"
    acked = probe.wait(
        f"{site.root}/alarms", lambda b: any(a["acked_by"] == "grid-worker-3" for a in b["active"])
    )
    assert [a["id"] for a in acked["active"] if a["acked_by"]] == ["smoke-302/smoke.alarm"]
    bad = site.command(site.gateway_id, "ack_alarm", {"alarm": "nope/none"})
    probe.publish(f"{site.root}/cmd", json.dumps(bad))
    assert (
        probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == bad["id"])["code"] == "invalid"
    )


def test_alarm_survives_daemon_restart(
    smoke_daemon: Daemon, receiver: EmulatorThread, broker: Broker
) -> None:
    root = smoke_daemon.site.root
    receiver.call(receiver.rx.detector(DETECTORS["smoke-301"]).alarm(200))
    p = Probe(broker.port)
    p.wait(f"{root}/alarms", lambda b: len(b["active"]) == 2)  # the smoke alarm and fire mode
    smoke_daemon.kill()
    smoke_daemon.start()
    p.close()
    broker.stop()  # forget every retained message: only the gateway's memory can bring it back
    broker.start()
    p = Probe(broker.port)
    try:
        back = p.wait(f"{root}/alarms", lambda b: len(b["active"]) == 2, timeout=15)
        assert {a["type"] for a in back["active"]} == {"smoke.alarm", "gateway.fire_mode"}
        assert p.wait(f"{root}/status", lambda s: s["online"])["fire_mode"] is True
    finally:
        p.close()


def test_missing_detector_reported_after_three_periods_and_cleared_on_return(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread, probe: Probe
) -> None:
    site = smoke_site(
        tmp_path,
        broker,
        receiver,
        "[rules.smoke]\nheartbeat_seconds = 0.4\nmissing_after_periods = 3\n",
    )
    daemon = Daemon(site)
    daemon.start()
    try:
        d301 = receiver.rx.detector(DETECTORS["smoke-301"])
        d302 = receiver.rx.detector(DETECTORS["smoke-302"])
        t0 = time.monotonic()
        stop = threading.Event()

        def keep_302_alive() -> None:
            while not stop.is_set():
                receiver.call(d302.heartbeat())
                stop.wait(0.2)

        beat = threading.Thread(target=keep_302_alive)
        beat.start()
        try:
            missing = probe.wait(
                f"{site.root}/events/smoke-301", lambda e: e["type"] == "smoke.missing", timeout=10
            )
            elapsed = time.monotonic() - t0
            assert missing["severity"] == "warning"
            assert elapsed >= 1.0  # not before 3 × 0.4 s of silence (minus start-up slack)
            alarms = probe.wait(
                f"{site.root}/alarms",
                lambda b: any(a["type"] == "smoke.missing" for a in b["active"]),
            )
            assert [a["device"] for a in alarms["active"] if a["type"] == "smoke.missing"] == [
                "smoke-301"
            ]
            receiver.call(d301.heartbeat())
            probe.wait(f"{site.root}/events/smoke-301", lambda e: e["type"] == "smoke.returned")
            probe.wait(
                f"{site.root}/alarms",
                lambda b: not any(a["type"] == "smoke.missing" for a in b["active"]),
            )
        finally:
            stop.set()
            beat.join()
    finally:
        daemon.stop()


def test_receiver_unplugged_and_replugged_resumes_without_restart(
    smoke_daemon: Daemon, receiver: EmulatorThread, probe: Probe
) -> None:
    root = smoke_daemon.site.root
    pid = smoke_daemon.proc.pid if smoke_daemon.proc else None
    events = f"{root}/events/{smoke_daemon.site.gateway_id}"
    online = lambda: [m for m in probe.on(events) if m.json()["type"] == "gateway.receiver_online"]
    probe.wait(  # retained: the probe subscribes after the daemon started, so its "online"
        f"{root}/state/{smoke_daemon.site.gateway_id}",  # event may have gone before
        lambda s: s.get("receiver.smoke-rx", {}).get("online") is True,
        timeout=10,
    )
    receiver.call(receiver.rx.unplug())
    probe.wait(
        f"{root}/events/{smoke_daemon.site.gateway_id}",
        lambda e: e["type"] == "gateway.receiver_offline",
    )
    before = len(online())  # events keep their order: a start-up "online" came before this
    probe.wait(
        f"{root}/alarms",
        lambda b: any(a["type"] == "gateway.receiver_offline" for a in b["active"]),
    )
    receiver.call(receiver.rx.replug())
    wait_until(lambda: len(online()) > before, 15, "the receiver answering again")
    wait_until(  # the latest alarms message, not the empty one published at connect
        lambda: probe.on(f"{root}/alarms")[-1].json()["active"] == [],
        5,
        "the receiver alarm to clear",
    )
    receiver.call(receiver.rx.detector(DETECTORS["smoke-302"]).alarm(77))
    event = probe.wait(f"{root}/events/smoke-302", lambda e: e["type"] == "smoke.alarm", timeout=10)
    assert event["data"]["density"] == 77
    assert smoke_daemon.alive
    assert smoke_daemon.proc is not None and smoke_daemon.proc.pid == pid
    wait_until(lambda: "Traceback" not in smoke_daemon.output(), 1, "a clean log")


def test_receiver_offline_from_before_a_restart_ends_when_it_answers_at_start(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread, probe: Probe
) -> None:
    """Defect 4: a persisted receiver_offline never cleared when the receiver answered at
    start-up (the driver only said "online" after having said "offline" itself)."""
    site = smoke_site(tmp_path, broker, receiver)
    root = site.root
    receiver.call(receiver.rx.unplug())
    d = Daemon(site)
    d.start()
    try:
        probe.wait(
            f"{root}/alarms",
            lambda b: any(a["type"] == "gateway.receiver_offline" for a in b["active"]),
            timeout=15,
        )
        d.stop()
        receiver.call(receiver.rx.replug())
        d.start()
        wait_until(lambda: probe.on(f"{root}/alarms")[-1].json()["active"] == [], 10, "no alarms")
    finally:
        d.stop()


def test_a_reload_that_restarts_the_smoke_bus_raises_no_false_receiver_alarm(
    smoke_daemon: Daemon, receiver: EmulatorThread, probe: Probe
) -> None:
    """Defect 4: a SIGHUP restarting the smoke bus raised a false critical receiver_offline:
    the new driver opened the port while the old one still held it."""
    site, root = smoke_daemon.site, smoke_daemon.site.root
    events = f"{root}/events/{site.gateway_id}"
    probe.wait(  # retained: the probe may have subscribed after the start's "online" event
        f"{root}/state/{site.gateway_id}",
        lambda s: s.get("receiver.smoke-rx", {}).get("online") is True,
        timeout=10,
    )
    for n in range(3):
        config = site.config.read_text()
        site.config.write_text(config.replace('room = "301"', f'room = "30{n}b"', 1) if n == 0
                               else config.replace(f'room = "30{n - 1}b"', f'room = "30{n}b"'))  # fmt: skip
        assert smoke_daemon.proc is not None
        smoke_daemon.proc.send_signal(__import__("signal").SIGHUP)
        wait_until(lambda n=n: smoke_daemon.output().count("reloaded") >= n + 1, 10, "reload")
        time.sleep(2.0)
    assert "bus smoke-rx: opened" in smoke_daemon.output()
    assert smoke_daemon.output().count("bus smoke-rx: opened") >= 4  # restarted each time
    offline = [m for m in probe.on(events) if m.json()["type"] == "gateway.receiver_offline"]
    assert offline == []
    assert all(
        a["type"] != "gateway.receiver_offline" for m in probe.on(f"{root}/alarms")
        for a in m.json()["active"]
    )  # fmt: skip


def test_a_legacy_detector_is_unsupervised_everywhere_and_never_missing(
    tmp_path: Path, broker: Broker, receiver: EmulatorThread, probe: Probe
) -> None:
    """An SD-1L sends no heartbeat: a standing warning instead of a false (or a missed)
    "missing", shown in the alarms, the devices list and `gatewayd status`."""
    body = smoke_config(receiver.rx.path, DETECTORS).replace(
        f'address = "{DETECTORS["smoke-302"]}"',
        f'address = "{DETECTORS["smoke-302"]}"\nmodel = "SD-1L"',
    )
    rules = "[rules.smoke]\nmissing_after_periods = 2\n"
    # heartbeat_seconds is the model's (an hour): shorten it for the supervised one only by
    # overriding, which an SD-1L ignores (it has no period to override).
    site = make_site(tmp_path, broker.url, body + "\n" + rules + "heartbeat_seconds = 0.3\n")
    daemon = Daemon(site)
    daemon.start()
    try:
        root = site.root
        listed = probe.wait(f"{root}/devices", lambda b: len(b["devices"]) == 2)
        by_id = {d["id"]: d for d in listed["devices"]}
        assert (by_id["smoke-302"]["supervised"], by_id["smoke-302"]["model"]) == (False, "SD-1L")
        assert by_id["smoke-301"]["supervised"] is True
        warned = probe.wait(
            f"{root}/alarms", lambda b: any(a["type"] == "smoke.unsupervised" for a in b["active"])
        )
        [alarm] = [a for a in warned["active"] if a["type"] == "smoke.unsupervised"]
        assert (alarm["device"], alarm["severity"]) == ("smoke-302", "warning")
        # Both are silent: the supervised one goes missing, the legacy one never does.
        probe.wait(f"{root}/events/smoke-301", lambda e: e["type"] == "smoke.missing", timeout=10)
        time.sleep(1.5)  # five more of the supervised one's periods
        assert not [m for m in probe.on(f"{root}/events/smoke-302")
                    if m.json()["type"] == "smoke.missing"]  # fmt: skip
        active = {(a["device"], a["type"]) for a in probe.on(f"{root}/alarms")[-1].json()["active"]}
        assert active == {("smoke-301", "smoke.missing"), ("smoke-302", "smoke.unsupervised")}
        text = gatewayd("status", "-c", str(site.config)).stdout
        [line] = [ln for ln in text.splitlines() if "smoke-302" in ln]
        assert "UNSUPERVISED: SD-1L" in line
        assert "UNSUPERVISED" not in "".join(ln for ln in text.splitlines() if "smoke-301" in ln)
    finally:
        daemon.stop()
