"""The atomic TinyDB storage and the alarm manager's memory across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from gatewayd.alarms import AlarmManager
from gatewayd.store import open_db


def test_alarms_and_fire_mode_survive_reopen(tmp_path: Path) -> None:
    db = open_db(str(tmp_path))
    changes: list[int] = []
    am = AlarmManager(db, on_change=lambda: changes.append(1))
    assert am.raise_("smoke-301", "smoke.alarm", "critical", {"density": 90}) is not None
    assert am.raise_("smoke-301", "smoke.alarm", "critical") is None  # idempotent
    assert am.enter_fire_mode()
    am.ack("smoke-301/smoke.alarm", "grid-worker-3")
    am.close()  # waits for the writer thread
    db.close()
    am2 = AlarmManager(open_db(str(tmp_path)))
    am2.close()
    [alarm] = am2.active()
    assert (alarm.id, alarm.severity, alarm.acked_by, dict(alarm.data)) == (
        "smoke-301/smoke.alarm",
        "critical",
        "grid-worker-3",
        {"density": 90},
    )
    assert am2.fire_mode is True
    assert len(changes) == 3


def test_each_change_is_one_atomic_file_replace(tmp_path: Path) -> None:
    db = open_db(str(tmp_path))
    am = AlarmManager(db)
    state = tmp_path / "state.json"
    am.raise_("d1", "smoke.fault", "warning")
    am.flush()
    inode = state.stat().st_ino
    am.clear("d1", "smoke.fault")
    am.flush()
    assert state.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert not (tmp_path / "state.json.tmp").exists()
    assert json.loads(state.read_text())["alarms"]["1"]["active"] == []
    mtime = state.stat().st_mtime_ns
    am.clear("d1", "smoke.fault")  # no change: no write
    am.flush()
    assert state.stat().st_mtime_ns == mtime
    am.close()


def test_corrupt_state_is_kept_aside_not_reused(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"alarms": {"1": {"act')  # torn by a power cut
    am = AlarmManager(open_db(str(tmp_path)))
    assert am.active() == []
    assert (tmp_path / "state.json.corrupt").exists()
    am.close()
