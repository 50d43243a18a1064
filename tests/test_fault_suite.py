"""The fault suite: every file the gateway persists, damaged every way an SD card damages one,
under 20 seeds; then the gateway starts on it (issue 13, "Must show").

A house's data directory is made once (fire mode on, an overheat awaiting its reset, events
waiting in the outbox, remote command ids, audit entries); each case copies it, damages one
file one way, and builds the gateway on it. Checked every time: it builds (nothing on disk can
keep the daemon, and so the rules, from starting); fire mode and the latched alarm are back, or
``gateway.state_lost`` is pending; every outbox record the damage did not touch is still
queued; command ids the damage did not touch are still refused as replays. One seed of each
case also runs the daemon itself until it is ready and stops it.

The outbox's own suite (tests/test_outbox_damage.py) checks delivery order and acknowledgements
under the same damage in more detail.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from gatewayd import config as config_mod
from gatewayd.alarms import FIRE_MODE, STATE_LOST
from gatewayd.audit import AuditLog
from gatewayd.commands.replay import ReplayCache
from gatewayd.runtime import Gateway
from gatewayd.uplink.lanes import URGENT
from tests.harness import make_site
from tests.test_outbox_damage import extents

FILES = ("state.json", "state.json.bak", "replay.log", "audit/audit.log", "outbox/acked.json",
         "outbox/segment")  # fmt: skip
KINDS = ("empty", "truncated", "flipped_bit", "garbage", "nul_filled", "unknown_fields")
HEAT = "pile-1/charger.overheat"
IDS = [f"cmd-{n}" for n in range(40)]


def golden(directory: Path) -> dict[str, Any]:
    """The data directory of a house after a while: returns what was put in it."""
    site = make_site(directory, "mqtt://127.0.0.1:9")
    gw = Gateway(config_mod.load(str(site.config)))
    gw.alarms.raise_("gw-test", FIRE_MODE, {"trigger": "smoke-301"}, part="smoke-301")
    gw.alarms.raise_("pile-1", "charger.overheat", {"port": 3}, part="3")
    gw.alarms.clear("pile-1", "charger.overheat", "3")  # cooled: awaits a person's reset
    for cid in IDS:
        gw.replay.add(cid, 4_000_000_000.0)
    for n in range(30):
        gw.audit.append({"ts": n, "device": "door-main", "action": "door.unlocked", "n": n})
    payloads = [json.dumps({"n": n, "pad": "x" * (n % 50)}).encode() for n in range(300)]
    for n, body in enumerate(payloads):
        gw.outbox.put(f"pingan/v1/gw-test/events/e{n % 3}", body, lane=URGENT if n % 4 else 1)

    async def commit() -> None:
        await gw.outbox.commit(final=True)

    asyncio.run(commit())
    for part in (gw.replay, gw.audit, gw.outbox, gw.keeper):
        part.close()
    return {"site": site, "records": len(payloads)}


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return golden(tmp_path_factory.mktemp("golden"))


def target(data: Path, name: str, rng: random.Random) -> Path:
    if name == "outbox/segment":
        return rng.choice(sorted((data / "outbox").glob("lane*.seg")))
    return data / name


def damage(path: Path, kind: str, rng: random.Random) -> None:
    raw = path.read_bytes()
    if kind == "empty":
        out = b""
    elif kind == "truncated":
        out = raw[: rng.randrange(1, len(raw))]
    elif kind == "flipped_bit":
        i = rng.randrange(len(raw))
        out = raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :]
    elif kind == "garbage":
        out = rng.randbytes(len(raw))
    elif kind == "nul_filled":
        out = b"\0" * len(raw)
    else:
        out = _unknown_fields(path, raw)
    path.write_bytes(out)


def _unknown_fields(path: Path, raw: bytes) -> bytes:
    """What a newer version might have written: fields this one does not know."""
    if path.name.startswith("state.json"):
        from gatewayd.store import _decode, _encode

        decoded = _decode(raw)
        assert decoded is not None
        generation, doc = decoded
        for record in doc["alarms"]["1"]["alarms"]:
            record["escalation"] = {"level": 2, "to": "grid-worker-3"}
        doc["alarms"]["1"]["schema"] = "v9"
        return _encode(generation, json.dumps(doc).encode())
    if path.name == "acked.json":
        doc = json.loads(raw)
        doc["compacted_at"] = 1_763_798_400
        return json.dumps(doc).encode()
    if path.name == "audit.log":
        return raw + b'{"ts": 1, "device": "door-main", "action": "x", "signature_v2": "..."}\n'
    if path.name == "replay.log":
        return raw + b"4000000000.0 cmd-new origin=relay-2\n"
    return raw + b"\xffOB3" + bytes(60)  # a segment record of a future format


def touched_records(path: Path, before: bytes) -> int:
    after = path.read_bytes()
    if not path.name.endswith(".seg"):
        return 0
    probe = path.with_suffix(".orig")
    probe.write_bytes(before)
    try:
        spans = extents(probe)
    finally:
        probe.unlink()
    return sum(1 for start, end, _n in spans if after[start:end] != before[start:end])


def build_on(
    house: dict[str, Any], where: Path, name: str, kind: str, seed: int
) -> tuple[Gateway, int, bytes]:
    shutil.copytree(house["site"].dir / "data", where / "data")
    rng = random.Random(f"{name}-{kind}-{seed}")
    path = target(where / "data", name, rng)
    before = path.read_bytes()
    damage(path, kind, rng)
    touched, after = touched_records(path, before), path.read_bytes()
    cfg_text = house["site"].config.read_text().replace(str(house["site"].dir), str(where))
    (where / "gateway.toml").write_text(cfg_text)
    shutil.copy(house["site"].dir / "command.key", where / "command.key")
    (where / "command.key").chmod(0o600)
    return Gateway(config_mod.load(str(where / "gateway.toml"))), touched, after


def check(gw: Gateway, house: dict[str, Any], name: str, touched: int, after: bytes) -> None:
    lost = gw.keeper.lost
    if name.startswith("state.json"):
        assert not lost  # the other copy holds the newest state
    if not lost:
        assert gw.alarms.fire_mode
        heat = gw.alarms.get(HEAT)
        assert heat is not None and heat.latched and not heat.active
    queued = gw.outbox.depth
    assert queued >= house["records"] - touched, (queued, touched)
    # Every id whose line the damage left whole is still refused as a replay.
    intact = IDS if name != "replay.log" else [
        cid for cid in IDS if f"4000000000.0 {cid}\n".encode() in after
    ]  # fmt: skip
    assert all(gw.replay.seen(cid) for cid in intact)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("seed", range(20))
def test_the_gateway_builds_on_any_damaged_file(
    house: dict[str, Any], tmp_path: Path, name: str, kind: str, seed: int
) -> None:
    gw, touched, after = build_on(house, tmp_path, name, kind, seed)
    try:
        check(gw, house, name, touched, after)
    finally:
        for part in (gw.replay, gw.audit, gw.outbox, gw.keeper):
            part.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FILES)
def test_the_daemon_runs_on_any_damaged_file(
    house: dict[str, Any], tmp_path: Path, name: str, kind: str
) -> None:
    gw, touched, after = build_on(house, tmp_path, name, kind, seed=0)

    async def run() -> None:
        ready = asyncio.Event()
        gw.ready = ready.set
        task = asyncio.create_task(gw.run())
        async with asyncio.timeout(10):
            await ready.wait()
        if gw.keeper.lost:
            alarm = gw.alarms.get(f"gw-test/{STATE_LOST}")
            assert alarm is not None and alarm.severity == "critical"
        check(gw, house, name, touched, after)
        gw.stop()
        await task

    asyncio.run(run())


def test_a_lost_state_with_every_copy_garbled_starts_and_says_so(
    house: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copytree(house["site"].dir / "data", tmp_path / "data")
    for copy in ("state.json", "state.json.bak"):
        (tmp_path / "data" / copy).write_bytes(b"\0" * 512)
    cfg = house["site"].config.read_text().replace(str(house["site"].dir), str(tmp_path))
    (tmp_path / "gateway.toml").write_text(cfg)
    shutil.copy(house["site"].dir / "command.key", tmp_path / "command.key")
    (tmp_path / "command.key").chmod(0o600)
    gw = Gateway(config_mod.load(str(tmp_path / "gateway.toml")))
    try:
        assert gw.keeper.lost and not gw.alarms.fire_mode
        assert gw.outbox.depth == house["records"]  # the rest of the house is intact
    finally:
        for part in (gw.replay, gw.audit, gw.outbox, gw.keeper):
            part.close()


def test_audit_log_survives_any_damage_and_keeps_appending(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit"))
    log.append({"n": 1})
    log.close()
    (tmp_path / "audit" / "audit.log").write_bytes(b"\xff\x00garbage{\n")
    again = AuditLog(str(tmp_path / "audit"))
    again.append({"n": 2})
    again.close()
    from gatewayd.audit import read

    assert [e.get("n") for e in read(str(tmp_path / "audit"))] == [2]


def test_replay_cache_reads_any_file(tmp_path: Path) -> None:
    path = tmp_path / "replay.log"
    path.write_bytes(b"\0" * 100 + b"\n4000000000.0 ok-id\n\xff\xfe\n")
    cache = ReplayCache(str(path))
    try:
        assert cache.seen("ok-id") and cache.skipped >= 1
    finally:
        cache.close()
