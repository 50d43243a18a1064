"""Door locks end to end: a signed command on the real broker → the daemon → bleak's BlueZ
backend → the fake BlueZ → the emulated DL-B2, and what the door did back to the broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import audit
from tests.ble_fixtures import ADDRESS, KEY, BleWorld, ble_world, key_file
from tests.cli_support import gatewayd
from tests.harness import Broker, Daemon, Probe, make_site, wait_until

__all__ = ["ble_world"]
DOOR = "door-main"


def door_site(tmp_path: Path, broker: Broker, key: bytes = KEY):  # type: ignore[no-untyped-def]
    body = (
        '[[buses]]\nname = "ble"\ndriver = "ble"\nkeepalive_seconds = 30\n\n'
        f'[[devices]]\nid = "{DOOR}"\nkind = "door_lock"\nbus = "ble"\naddress = "{ADDRESS}"\n'
        f'key_file = "{key_file(tmp_path, key)}"\nescape_route = true\n'
    )
    return make_site(tmp_path, broker.url, body)


@pytest.fixture
def lock(ble_world: BleWorld):  # type: ignore[no-untyped-def]
    return ble_world.emu.add_lock(ADDRESS, KEY)


@pytest.fixture
def door_daemon(tmp_path: Path, broker: Broker, lock) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    d = Daemon(door_site(tmp_path, broker))  # inherits DBUS_SYSTEM_BUS_ADDRESS of the fake BlueZ
    d.start()
    yield d
    if d.alive:
        d.stop()


def connected(probe: Probe, root: str) -> None:
    probe.wait(f"{root}/state/{DOOR}", lambda s: s.get("connected") is True, timeout=15)


def test_signed_unlock_opens_door_attributed_to_user_then_relocks(
    door_daemon: Daemon, probe: Probe, ble_world: BleWorld, lock
) -> None:  # type: ignore[no-untyped-def]
    site = door_daemon.site
    connected(probe, site.root)
    probe.wait(f"{site.root}/state/{DOOR}", lambda s: s.get("key_ok") is True, timeout=5)
    cmd = site.command(DOOR, "unlock", {"seconds": 1}, user="tenant-302")
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    result = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=10)
    assert (result["code"], result["ok"]) == ("ok", True)
    unlocks = [c for c in ble_world.emu.call(lock.accepted) if c.op == 1]
    assert [(c.arg, c.result) for c in unlocks] == [(1, 0)]  # the lock checked our MAC itself
    unlocked = probe.wait(
        f"{site.root}/events/{DOOR}", lambda e: e["type"] == "door.unlocked", timeout=5
    )
    assert unlocked["data"]["method"] == "remote"
    assert (unlocked["data"]["user"], unlocked["data"]["command"]) == ("tenant-302", cmd["id"])
    relocked = probe.wait(
        f"{site.root}/events/{DOOR}", lambda e: e["type"] == "door.locked", timeout=5
    )
    assert relocked["data"]["method"] == "auto_relock"
    entries = audit.read(str(site.dir / "data" / "audit"))
    [app] = [e for e in entries if e["source"] == "app"]
    assert (app["action"], app["user"], app["outcome"], app["command"]) == (
        "unlock",
        "tenant-302",
        "ok",
        cmd["id"],
    )
    assert any(e["action"] == "door.unlocked" and e["user"] == "tenant-302" for e in entries)


def test_forged_command_never_reaches_the_lock_and_is_audited(
    door_daemon: Daemon, probe: Probe, ble_world: BleWorld, lock
) -> None:  # type: ignore[no-untyped-def]
    site = door_daemon.site
    connected(probe, site.root)
    forged = site.command(DOOR, "unlock", {"seconds": 5}, user="intruder", key=b"\x07" * 32)
    probe.publish(f"{site.root}/cmd", json.dumps(forged))
    assert (
        probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == forged["id"])["code"]
        == "bad_signature"
    )
    assert [c for c in ble_world.emu.call(lambda: list(lock.commands)) if c.op == 1] == []
    wait_until(lambda: audit.read(str(site.dir / "data" / "audit")), 2, "the audit entry")
    [entry] = audit.read(str(site.dir / "data" / "audit"))
    assert (entry["user"], entry["outcome"]) == ("intruder", "bad_signature")


def test_wrong_device_key_refused_by_the_lock_and_reported(
    tmp_path: Path, broker: Broker, probe: Probe, ble_world: BleWorld, lock
) -> None:  # type: ignore[no-untyped-def]
    site = door_site(tmp_path, broker, key=bytes(16))
    daemon = Daemon(site)
    daemon.start()
    try:
        cmd = site.command(DOOR, "unlock", {"seconds": 5})
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
        result = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=15)
        assert result["code"] == "device_error"
        assert "bad_mac" in result["detail"]
        assert ble_world.emu.call(lambda: lock.lock_state) == 0  # still locked
        assert [c for c in ble_world.emu.call(lock.accepted) if c.op == 1] == []
        entries = audit.read(str(site.dir / "data" / "audit"))
        assert entries[-1]["outcome"] == "device_error"
        # The link is up but useless: the state and the installer's check say why.
        probe.wait(
            f"{site.root}/state/{DOOR}",
            lambda s: s.get("connected") is True and s.get("key_ok") is False,
            timeout=10,
        )
        check = gatewayd("--lang", "en", "check", "--all", "-c", str(site.config))
        refused = f"✗ {DOOR}: connected, but the lock refuses its key (bad MAC): is key_file"
        assert any(line.startswith(refused) for line in check.stdout.splitlines()), check.stdout
        assert check.returncode == 1
    finally:
        daemon.stop()


def test_card_unlock_and_denied_card_reach_broker_and_audit(
    door_daemon: Daemon, probe: Probe, ble_world: BleWorld, lock
) -> None:  # type: ignore[no-untyped-def]
    site = door_daemon.site
    connected(probe, site.root)
    ble_world.emu.call(lock.card, 4711)
    card = probe.wait(
        f"{site.root}/events/{DOOR}", lambda e: e["type"] == "door.unlocked", timeout=5
    )
    assert (card["data"]["method"], card["data"]["user"]) == ("card", 4711)
    ble_world.emu.call(lock.card, 99, False)
    denied = probe.wait(
        f"{site.root}/events/{DOOR}", lambda e: e["type"] == "door.access_denied", timeout=5
    )
    assert denied["severity"] == "warning"
    entries = audit.read(str(site.dir / "data" / "audit"))
    assert [e["method"] for e in entries if e["action"] == "door.unlocked"] == ["card"]
    assert any(e["action"] == "door.access_denied" and e["outcome"] == "denied" for e in entries)


def test_after_kill_9_a_lock_bluez_still_holds_is_unlocked_in_time(
    door_daemon: Daemon, probe: Probe, ble_world: BleWorld, lock
) -> None:  # type: ignore[no-untyped-def]
    """kill -9 leaves BlueZ holding the lock's link and the lock, with its one central, does
    not advertise. The restarted daemon reaches it through that link: a signed unlock sent as
    soon as the daemon listens is accepted by the lock within the 4 s action deadline."""
    site = door_daemon.site
    connected(probe, site.root)
    door_daemon.kill()
    time.sleep(0.3)  # the dead daemon's D-Bus connections are gone; BlueZ keeps the link
    assert ble_world.emu.call(lambda: (lock.is_connected, lock.advertisement())) == (True, None)
    door_daemon.start()
    cmd = site.command(DOOR, "unlock", {"seconds": 1}, user="tenant-302")
    t0 = time.monotonic()
    probe.publish(f"{site.root}/cmd", json.dumps(cmd))
    result = probe.wait(f"{site.root}/cmd/result", lambda r: r["id"] == cmd["id"], timeout=10)
    took = time.monotonic() - t0
    assert (result["code"], result["ok"]) == ("ok", True), result
    assert took < 4.0
    unlocks = [c for c in ble_world.emu.call(lock.accepted) if c.op == 1]
    assert [(c.seq, c.arg) for c in unlocks] == [(result["data"]["seq"], 1)]
    assert "held connected by BlueZ; using that link" in door_daemon.output()  # for the operator


def test_remote_unlock_while_held_open_leaves_the_retained_state_held_open(
    door_daemon: Daemon, probe: Probe, ble_world: BleWorld, lock, broker: Broker
) -> None:  # type: ignore[no-untyped-def]
    """The lock stays held open through an unlock (datasheet: until an explicit lock); the
    door's retained state says so, and never said "unlocked" on the way."""
    site = door_daemon.site
    topic = f"{site.root}/state/{DOOR}"
    connected(probe, site.root)
    for action, args in (("hold_open", {}), ("unlock", {"seconds": 1})):
        cmd = site.command(DOOR, action, args)
        probe.publish(f"{site.root}/cmd", json.dumps(cmd))
        result = probe.wait(f"{site.root}/cmd/result", lambda r, c=cmd: r["id"] == c["id"])
        assert result["code"] == "ok", result
    probe.wait(topic, lambda s: s.get("lock") == "held_open")
    probe.wait(f"{site.root}/events/{DOOR}", lambda e: e["data"].get("method") == "remote")
    time.sleep(1.5)  # past the unlock's relock time, and the STATUS asked after it
    assert ble_world.emu.call(lambda: lock.lock_state) == 2  # held open at the lock
    late = Probe(broker.port, topic)  # a newcomer gets the retained state
    try:
        retained = late.wait(topic)
    finally:
        late.close()
    assert (retained["lock"], retained["connected"]) == ("held_open", True)
    said = [m.json().get("lock") for m in probe.on(topic)]
    assert "unlocked" not in said, said
