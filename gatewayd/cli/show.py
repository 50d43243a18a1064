"""Device state for people: aligned words and units, never a Python repr (issue 19 item 5).

`gatewayd test`, `status` and `device show` print what a device reports through here: a flag
is yes/no, nothing is "-", a figure carries its unit (°C, W, V, mV, %, dBm, s) read off its
key's suffix, a time is "2 min ago", a list of records (a pile's ports) is a small table. Key
names stay as they are (what a person searches the docs and the JSON for); ``--json`` gives
machines the raw data instead, so nothing here needs to be parsed back.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gatewayd.cli.i18n import t

#: A key's suffix -> the unit its figure is in (the families' own naming: ``cabinet_c``).
UNITS = {
    "_c": "°C",
    "_w": "W",
    "_v": "V",
    "_mv": "mV",
    "_ma": "mA",
    "_a": "A",
    "_wh": "Wh",
    "_pct": "%",
    "_seconds": "s",
    "_dbm": "dBm",
    "_s": "s",
    "rssi": "dBm",
}

#: Keys whose number is a moment (seconds since the epoch), shown as how long ago.
MOMENTS = ("last_seen", "ts", "since")


def ago(seconds: float) -> str:
    """``seconds`` as a person says a span: 42 s, 3 min, 5 h, 2 d."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def unit_of(key: str) -> str:
    return next((u for suffix, u in UNITS.items() if key.endswith(suffix)), "")


def is_moment(key: str, value: Any) -> bool:
    return (key in MOMENTS or key.endswith("_at")) and isinstance(value, int | float)


def value_text(key: str, value: Any) -> str:
    """One value as a person reads it."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, bool):
        return t("show_yes") if value else t("show_no")
    if is_moment(key, value):
        return t("show_ago", ago=ago(time.time() - float(value)))
    if isinstance(value, float):
        value = f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(key, v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {value_text(str(k), v)}" for k, v in value.items())
    unit = unit_of(key)
    return f"{value} {unit}" if unit else str(value)


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def is_table(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(row, Mapping) for row in value)
    )


def table_lines(rows: Sequence[Mapping[str, Any]], indent: str = "") -> list[str]:
    """Records as an aligned table under their key names (a pile's ports)."""
    keys: list[str] = []
    for row in rows:
        keys += [str(k) for k in row if str(k) not in keys]
    cells = [keys] + [[value_text(k, row.get(k)) for k in keys] for row in rows]
    return [indent + line for line in columns(cells)]


def pairs_lines(items: Iterable[tuple[str, Any]], indent: str = "  ") -> list[str]:
    """``key value`` lines, the values aligned; a list of records becomes a table under its
    key."""
    items = list(items)
    # 16 wide at least: the lines of `gatewayd test` keep the column they always had.
    keys = max([16, *(width(k) for k, v in items if not is_table(v))])
    lines: list[str] = []
    for key, value in items:
        if is_table(value):
            lines.append(f"{indent}{key}")
            lines += table_lines(value, indent + "  ")
        else:
            lines.append(f"{indent}{pad(key, keys)} {value_text(key, value)}")
    return lines


def columns(rows: Sequence[Sequence[str]], gap: str = "  ") -> list[str]:
    """Rows of cells aligned into columns as wide as their widest cell."""
    if not rows:
        return []
    n = max(len(r) for r in rows)
    widths = [max((width(r[i]) for r in rows if i < len(r)), default=0) for i in range(n)]
    return [gap.join(pad(c, widths[i]) for i, c in enumerate(row)).rstrip() for row in rows]


def brief_lines(items: Iterable[tuple[str, Any]], indent: str, wrap: int = 100) -> list[str]:
    """``key value`` pairs run on in lines of at most ``wrap`` columns, tables below them:
    the overview of `gatewayd status`, a few lines a device."""
    items = list(items)
    lines: list[str] = []
    line = ""
    for key, value in items:
        if is_table(value):
            continue
        pair = f"{key} {value_text(key, value)}"
        if line and width(indent + line + "  " + pair) > wrap:
            lines.append(indent + line)
            line = ""
        line = f"{line}  {pair}" if line else pair
    if line:
        lines.append(indent + line)
    for key, value in items:
        if is_table(value):
            lines.append(f"{indent}{key}")
            lines += table_lines(value, indent + "  ")
    return lines
