"""Hardening: security outcomes.

- TLS with client certificates and a per-gateway ACL in mosquitto (``require_certificate``,
  ``use_identity_as_username``, ``pattern`` rules on the identity): the gateway works, and a
  client holding gateway A's certificate cannot publish into gateway B's topics nor read B's
  commands; a client without a certificate gets nowhere.
- One whole daemon session on the demo-like emulated house (smoke receiver, RS-485 and TCP
  piles, two BLE locks) with an MQTT password, signed and forged commands, a lock that refuses
  connections, reloads good and bad, all under ``--debug``: no key, password or signature in
  any log line; data directory and file modes after the run.
- The local control socket refusing other users is tested in tests/test_control.py
  (test_other_users_are_refused_group_members_let_in), and what a local user can do to the
  daemon through it (a flood of connections, malformed lines, forged names, a second daemon)
  in tests/test_control_daemon.py; neither is repeated here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.site import EmulatedSite
from gatewayd import audit
from tests.hardening_support import (
    DebugDaemon,
    Pki,
    TlsBroker,
    TlsProbe,
    control_env,
    write_site,
)
from tests.harness import Broker, Probe, Site, wait_until

HEX64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


# -- client certificates and a per-gateway ACL -----------------------------------------------------

ACL = """# every gateway writes under its own root and reads only its own commands
pattern write pingan/v1/%u/#
pattern read pingan/v1/%u/cmd

user platform
topic readwrite pingan/#
"""


def test_client_certificates_and_acl_keep_each_gateway_in_its_own_topics(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    server = pki.issue("127.0.0.1", "server")
    cert_a, cert_b, cert_platform = (pki.issue(cn, "client") for cn in ("gw-a", "gw-b", "platform"))
    broker = TlsBroker(tmp_path, pki.ca, *server, client_certs=True, acl=ACL)
    broker.start()
    tls = f'ca_file = "{pki.ca}"\ncert_file = "{cert_a[0]}"\nkey_file = "{cert_a[1]}"\n'
    site = write_site(tmp_path, broker.url, gateway_id="gw-a", mqtt_extra=tls)
    daemon = DebugDaemon(site, env=control_env(site))
    probes: list[TlsProbe] = []
    try:
        daemon.start()
        platform = TlsProbe(broker.port, pki.ca, *cert_platform, subscribe="pingan/v1/#")
        gw_b = TlsProbe(broker.port, pki.ca, *cert_b, subscribe="pingan/v1/gw-b/cmd")
        intruder = TlsProbe(
            broker.port, pki.ca, *cert_a, subscribe="pingan/v1/gw-b/cmd", client_id="not-gw-a"
        )
        probes += [platform, gw_b, intruder]
        for p in probes:
            assert p.subscribed.wait(5), "a probe could not subscribe"
        # Gateway A works: its status is out, and it reads and answers its own commands.
        assert platform.wait("pingan/v1/gw-a/status", lambda s: s["online"], 10)["online"]
        cmd = site.command("gw-a", "ping")
        platform.publish("pingan/v1/gw-a/cmd", json.dumps(cmd).encode())
        result = platform.wait("pingan/v1/gw-a/cmd/result", lambda r: r["id"] == cmd["id"], 10)
        assert result["code"] == "ok"
        # With A's certificate, into B's topics: a fake fire, a fake status, a fake command.
        fake_fire = {"id": "x1", "ts": time.time(), "device": "smoke-1", "type": "smoke.alarm",
                     "severity": "critical", "data": {}}  # fmt: skip
        for topic, body in [
            ("pingan/v1/gw-b/events/smoke-1", fake_fire),
            ("pingan/v1/gw-b/status", {"online": False}),
            ("pingan/v1/gw-b/alarms", {"ts": 0, "active": []}),
            ("pingan/v1/gw-b/cmd", {"id": "evil", "device": "door-main", "action": "unlock"}),
        ]:
            intruder.publish(topic, json.dumps(body).encode())
        # Control: the same client in its own topics does get through.
        intruder.publish("pingan/v1/gw-a/events/probe", b'{"id": "control"}')
        platform_cmd = {"id": "legit", "device": "door-main", "action": "status"}
        platform.publish("pingan/v1/gw-b/cmd", json.dumps(platform_cmd).encode())
        platform.wait("pingan/v1/gw-a/events/probe", lambda b: b["id"] == "control", 10)
        gw_b.wait("pingan/v1/gw-b/cmd", lambda b: b["id"] == "legit", 10)
        time.sleep(0.3)
        assert [m.json() for m in gw_b.on("#")] == [platform_cmd]  # never the intruder's
        assert platform.on("pingan/v1/gw-b/events/#") == []
        assert platform.on("pingan/v1/gw-b/status") == []
        assert platform.on("pingan/v1/gw-b/alarms") == []
        assert intruder.on("#") == []  # nor could it read B's commands
        # No certificate, no session.
        stranger = TlsProbe(broker.port, pki.ca, subscribe="pingan/#")
        probes.append(stranger)
        assert not stranger.connected.wait(0.5)
        assert daemon.alive and "Traceback" not in daemon.output()
    finally:
        for p in probes:
            p.close()
        if daemon.proc is not None and daemon.alive:
            daemon.stop()
        broker.stop()


# -- a whole session, then what it left behind -----------------------------------------------------


@dataclass
class Session:
    site: Site
    log: str
    exit_code: int
    secrets: dict[str, str]
    sigs: list[str]
    results: dict[str, dict[str, Any]]
    data: Path
    accepted_while_refusing: int


def _send(probe: Probe, site: Site, cmd: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    return dict(
        probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=timeout)
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("session")
    house = EmulatedSite(tmp).start()
    broker = Broker(tmp)
    broker.start()
    password = os.urandom(12).hex()
    pw_file = tmp / "mqtt.password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    mqtt = f'username = "gw-test"\npassword_file = "{pw_file}"\n'
    site = write_site(tmp, broker.url, house.config(tmp), mqtt_extra=mqtt)
    config_text = site.config.read_text()
    probe = Probe(broker.port)
    daemon = DebugDaemon(site, env=control_env(site))  # after the site: its D-Bus address
    results: dict[str, dict[str, Any]] = {}
    sigs: list[str] = []
    try:
        daemon.start()
        for dev in ("door-main", "door-back"):
            probe.wait(f"{site.root}/state/{dev}", lambda s: s.get("connected") is True, 20)
        for dev in ("pile-1", "pile-2", "pile-3"):
            probe.wait(f"{site.root}/state/{dev}", lambda s: s.get("online") is True, 20)

        def send(name: str, cmd: dict[str, Any]) -> None:
            sigs.append(cmd["sig"])
            results[name] = _send(probe, site, cmd)

        send("unlock", site.command("door-main", "unlock", {"seconds": 1}))
        send("status", site.command("door-back", "status"))
        send("port_off", site.command("pile-1", "port_off", {"port": 2}))
        send("ping", site.command(site.gateway_id, "ping"))
        send("forged", site.command("door-main", "unlock", key=os.urandom(32)))
        house.call(house.detector("smoke-301").heartbeat())
        house.call(house.detector("smoke-302").low_battery(2500))  # an alarm: state.json
        probe.wait(
            f"{site.root}/alarms",
            lambda a: "smoke.low_battery" in {x["type"] for x in a["active"]},
            10,
        )
        lock = house.locks["door-main"]
        house.lock_call(lock.card, 4711)
        probe.wait(f"{site.root}/events/door-main", lambda e: e["data"].get("user") == 4711)
        # Reloads: the same config, then a broken one (refused, the running one kept), then back.
        daemon.reload()
        wait_until(lambda: "reloaded" in daemon.output(), 10, "the reload")
        site.config.write_text(config_text.replace("commands_per_minute = 60", "x = 1"))
        daemon.reload()
        wait_until(lambda: "reload refused" in daemon.output(), 10, "the refused reload")
        site.config.write_text(config_text)
        # A lock that refuses connections: the command is never "ok".
        house.lock_call(setattr, lock, "refuse_connections", True)
        house.lock_call(lock.drop_link)
        probe.wait(f"{site.root}/state/door-main", lambda s: s.get("connected") is False, 10)
        before = len(house.lock_call(lock.accepted))
        send("refused_unlock", site.command("door-main", "unlock", {"seconds": 1}))
        refused_state = len(house.lock_call(lock.accepted)) - before
        house.lock_call(setattr, lock, "refuse_connections", False)
        exit_code = daemon.stop()
        log = daemon.log.read_text(errors="replace")
        yield Session(
            site=site,
            log=log,
            exit_code=exit_code,
            secrets={
                "command key": site.key.hex(),
                "door-main key": house.plan.locks["door-main"][1].hex(),
                "door-back key": house.plan.locks["door-back"][1].hex(),
                "mqtt password": password,
            },
            sigs=sigs,
            results=results,
            data=tmp / "data",
            accepted_while_refusing=refused_state,
        )
    finally:
        probe.close()
        if daemon.proc is not None and daemon.alive:
            daemon.stop(signal.SIGKILL)
        broker.stop()
        house.stop()


def test_the_session_did_what_it_was_asked(session: Session) -> None:
    codes = {name: r["code"] for name, r in session.results.items()}
    assert {k: v for k, v in codes.items() if k != "refused_unlock"} == {
        "unlock": "ok",
        "status": "ok",
        "port_off": "ok",
        "ping": "ok",
        "forged": "bad_signature",
    }
    assert "reloaded" in session.log and "reload refused" in session.log
    assert session.exit_code == 0
    assert "Traceback" not in session.log


def test_a_lock_refusing_connections_answers_timeout_or_device_error(session: Session) -> None:
    result = session.results["refused_unlock"]
    assert result["code"] in ("timeout", "device_error") and result["ok"] is False
    assert session.accepted_while_refusing == 0  # the lock acted on nothing


def test_no_secret_in_any_log_line(session: Session) -> None:
    text = session.log
    audit_text = json.dumps(audit.read(str(session.data / "audit")))
    assert len(text.splitlines()) > 100  # --debug: there was plenty to leak into
    for name, secret in session.secrets.items():
        for form in (secret, secret.upper()):
            assert form not in text, f"the {name} is in the daemon's log"
            assert form not in audit_text, f"the {name} is in the audit log"
    for sig in session.sigs:
        assert sig not in text and sig not in audit_text
    assert HEX64.findall(text) == []  # no full signature or key of any origin


def test_data_dir_and_file_modes_after_a_run(session: Session) -> None:
    data = session.data
    modes = {
        str(p.relative_to(data)): stat.S_IMODE(p.lstat().st_mode) for p in [data, *data.rglob("*")]
    }
    for d in ("outbox", "audit"):
        assert modes[d] == 0o750, d
    assert modes["audit/audit.log"] == 0o600
    assert modes["replay.log"] == 0o600
    assert modes["state.json"] == 0o600
    segments = [k for k in modes if k.endswith(".seg")]
    assert all(modes[k] == 0o600 for k in segments), {k: oct(modes[k]) for k in segments}
    assert session.site.config.parent.joinpath("command.key").stat().st_mode & 0o077 == 0


def test_data_dir_is_0750_and_every_file_in_it_0600(session: Session) -> None:
    assert oct(stat.S_IMODE(session.data.stat().st_mode)) == oct(0o750)
    loose = {
        str(p.relative_to(session.data)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in session.data.rglob("*")
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) != 0o600
    }
    assert loose == {}


def test_a_key_pasted_where_its_file_belongs_is_not_echoed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness import REPO, free_port

    key = os.urandom(32).hex()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-test"\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n\n'
        f'[security]\ncommand_key_file = "{key}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "gatewayd", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2 and "command_key_file" in done.stderr + done.stdout
    assert key not in done.stderr + done.stdout
