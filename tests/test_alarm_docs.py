"""docs/alarms.md carries the alarm-type table the rules declare, word for word."""

from __future__ import annotations

from gatewayd.alarms.doc import table
from rules.engine import Engine
from tests.harness import REPO


def test_the_documented_alarm_types_are_the_declared_ones() -> None:
    doc = (REPO / "docs" / "alarms.md").read_text()
    assert table(Engine.from_config({}).catalogue()) in doc, (
        "docs/alarms.md is out of date: regenerate its table with `python -m gatewayd.alarms.doc`"
    )
