"""The gateway's persisted state: two checksummed copies, and the alarm keeper on top of them.

What a failing SD card does to a file — zeroed, torn, one flipped bit, garbage, bytes that are
not UTF-8 — must never stop the start, never silently roll fire mode back, and must say so
when nothing usable is left (``gateway.state_lost``).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gatewayd.alarms import FIRE_MODE, STATE_LOST, Catalogue
from gatewayd.alarms.keeper import AlarmKeeper
from gatewayd.store import open_db
from rules.engine import Engine
from tests.hardening_support import remount_ro, tmpfs


def catalogue() -> Catalogue:
    return Engine.from_config({}).catalogue()


def keeper(data: Path) -> AlarmKeeper:
    return AlarmKeeper(str(data), "gw", catalogue())


def fire_and_overheat(data: Path) -> None:
    k = keeper(data)
    k.book.raise_("gw", FIRE_MODE, {"trigger": "smoke-301"}, part="smoke-301")
    k.book.raise_("pile-1", "charger.overheat", {"port": 3}, part="3")
    k.ack("pile-1/charger.overheat", "grid-worker-3")
    k.close()


def test_alarms_and_fire_mode_survive_reopen_with_their_lifecycle(tmp_path: Path) -> None:
    fire_and_overheat(tmp_path)
    k = keeper(tmp_path)
    assert not k.lost and k.start() is None
    assert k.book.fire_mode
    heat = k.book.get("pile-1/charger.overheat")
    assert heat is not None
    assert (heat.latched, heat.active, heat.acked_by, dict(heat.parts)) == (
        True,
        True,
        "grid-worker-3",
        {"3": True},
    )
    k.close()


def test_each_change_replaces_both_copies_atomically(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    k.book.raise_("d1", "smoke.tamper", {"removed": True})
    k.flush()
    main, bak = tmp_path / "state.json", tmp_path / "state.json.bak"
    inode = main.stat().st_ino
    assert main.read_bytes() == bak.read_bytes()  # both hold the newest state
    assert main.read_bytes().startswith(b"gatewayd-state 1 ")
    k.book.clear("d1", "smoke.tamper")
    k.flush()
    assert main.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert not list(tmp_path.glob("*.tmp"))
    mtime = main.stat().st_mtime_ns
    k.book.clear("d1", "smoke.tamper")  # no change: no write
    k.flush()
    assert main.stat().st_mtime_ns == mtime
    k.close()


DAMAGES = ("empty", "truncated", "flipped_bit", "garbage", "nul_filled", "not_utf8")


def damage(path: Path, how: str, rnd: random.Random) -> None:
    raw = path.read_bytes()
    if how == "empty":
        out = b""
    elif how == "truncated":
        out = raw[: rnd.randrange(1, len(raw))]
    elif how == "flipped_bit":
        i = rnd.randrange(len(raw))
        out = raw[:i] + bytes([raw[i] ^ (1 << rnd.randrange(8))]) + raw[i + 1 :]
    elif how == "garbage":
        out = rnd.randbytes(len(raw))
    elif how == "nul_filled":
        out = b"\0" * len(raw)
    else:  # one byte that is not UTF-8 in the body
        i = rnd.randrange(raw.index(b"\n") + 1, len(raw))
        out = raw[:i] + b"\xff" + raw[i + 1 :]
    path.write_bytes(out)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("seed", range(20))
def test_one_damaged_copy_loses_nothing(tmp_path: Path, how: str, seed: int) -> None:
    rnd = random.Random(seed)
    fire_and_overheat(tmp_path)
    damaged = tmp_path / rnd.choice(("state.json", "state.json.bak"))
    damage(damaged, how, rnd)
    k = keeper(tmp_path)
    assert not k.lost and k.start() is None
    assert k.book.fire_mode  # fire mode is never rolled back by one bad copy
    assert k.book.get("pile-1/charger.overheat") is not None
    k.flush()  # the good copy was written back over the damaged one
    assert (tmp_path / "state.json").read_bytes() == (tmp_path / "state.json.bak").read_bytes()
    k.close()


@pytest.mark.parametrize("how", DAMAGES)
def test_both_copies_damaged_is_state_lost_never_a_silent_fresh_start(
    tmp_path: Path, how: str
) -> None:
    rnd = random.Random(7)
    fire_and_overheat(tmp_path)
    for name in ("state.json", "state.json.bak"):
        damage(tmp_path / name, how, rnd)
    k = keeper(tmp_path)
    assert k.lost
    alarm = k.start()
    assert alarm is not None and alarm.type == STATE_LOST and alarm.latched
    assert not alarm.active  # nothing to wait for: a person resets it
    assert k.book.check_reset(alarm.id) == alarm
    assert set(alarm.data["damaged"]) == {
        str(tmp_path / "state.json"),
        str(tmp_path / "state.json.bak"),
    }
    k.close()


def test_unknown_fields_and_unreadable_records(tmp_path: Path) -> None:
    """A record from a newer version (fields this one does not know) loads; a record that
    cannot be read at all means alarms may be missing: state_lost."""
    db, _ = open_db(str(tmp_path))
    db.table("alarms").insert(
        {
            "format": 9,
            "alarms": [
                {
                    "device": "pile-1",
                    "type": "charger.overheat",
                    "since": 100.0,
                    "parts": {"3": True},
                    "escalation": {"level": 2},  # a field from the future
                },
                {"device": "gw", "type": FIRE_MODE, "since": 101.0, "colour": "red"},
            ],
        }
    )
    db.close()
    k = keeper(tmp_path)
    assert not k.lost
    assert k.book.fire_mode
    heat = k.book.get("pile-1/charger.overheat")
    assert heat is not None and heat.latched and heat.parts == {"3": True}
    k.close()

    db, _ = open_db(str(tmp_path))
    db.table("alarms").update({"alarms": [{"device": 7, "type": None}, "nonsense"]}, doc_ids=[1])
    db.close()
    k = keeper(tmp_path)
    assert k.lost and k.book.unreadable == 2
    k.close()


def test_state_from_before_checksums_is_read(tmp_path: Path) -> None:
    """A gateway updated in the field keeps its fire mode from the old plain-JSON file."""
    (tmp_path / "state.json").write_text(
        '{"alarms": {"1": {"active": [{"id": "smoke-301/smoke.alarm", "device": "smoke-301", '
        '"type": "smoke.alarm", "severity": "critical", "since": 5.0, "acked_by": null, '
        '"data": {"density": 90}}], "fire_mode": true, "fire_since": 4.0}}}'
    )
    k = keeper(tmp_path)
    assert not k.lost
    assert k.book.fire_mode and k.book.fire_since == 4.0
    assert k.book.get("smoke-301/smoke.alarm") is not None
    k.close()


def test_a_directory_in_place_of_the_file_does_not_stop_the_start(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()
    k = keeper(tmp_path)
    assert k.lost  # something was there and it is not a state
    assert k.start() is not None
    k.book.raise_("gw", FIRE_MODE, {}, part="smoke-1")  # still works from memory
    assert k.book.fire_mode
    k.close()


def test_read_only_card_keeps_working_from_memory_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tmpfs(data):
        fire_and_overheat(data)
        remount_ro(data)
        k = keeper(data)
        assert k.book.fire_mode  # read, though nothing can be written
        k.book.raise_("pile-2", "charger.overheat", {"port": 1}, part="1")
        k.flush()
        assert k.store_error is not None
        k.check_storage({})
        storage = k.book.get("gw/gateway.storage_failed")
        assert storage is not None and storage.parts == {"state": True}
        k.close()
