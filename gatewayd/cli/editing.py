"""Editing gateway.toml as text, so every comment and blank line an installer wrote stays
exactly where it was.

tomlkit renders the values (quoting, escapes); the placement is done on lines: a table's own
comment is the comment block directly above its header (no blank line between), and it goes
with the table when the table is removed. Every edit is validated with ``gatewayd.config.parse``
(so each driver's schema applies) before the file is replaced atomically, keeping its mode and
owner. Nothing here prints; errors are ``EditError`` with one line for a person.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from gatewayd.cli.i18n import t
from gatewayd.errors import GatewayError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
_MULTI = ('"""', "'''")


class EditError(GatewayError):
    """The edit was refused: one line saying why (``config_error``: the config's own error,
    when that was the reason, for a translated line)."""

    def __init__(self, message: str, config_error: GatewayError | None = None) -> None:
        super().__init__(message)
        self.config_error = config_error


class ConfigText:
    """One gateway.toml: its lines, what tomllib makes of them, and where each table starts."""

    def __init__(self, path: str, text: str | None = None) -> None:
        self.path = path
        if text is None:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                raise EditError(t("edit_no_file", path=path)) from None
            except OSError as exc:
                raise EditError(t("cannot_read", path=path, reason=exc.strerror)) from None
        self.text = text
        try:
            self.data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise EditError(t("edit_not_toml", path=path, reason=exc)) from None

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    def tables(self, key: str) -> list[dict[str, Any]]:
        value = self.data.get(key, [])
        return value if isinstance(value, list) else []

    # -- where things are ----------------------------------------------------------------------

    def _headers(self) -> list[tuple[int, str, bool]]:
        """(line index, table name, is an array table) of every header outside strings."""
        out = []
        inside: str | None = None
        for i, line in enumerate(self.lines):
            if inside is None:
                m = _HEADER.match(line)
                if m:
                    out.append((i, m.group(2), m.group(1) == "[["))
                    continue
            for quote in _MULTI:
                if line.count(quote) % 2 and (inside is None or inside == quote):
                    inside = None if inside == quote else quote
        return out

    def _block_start(self, header_line: int) -> int:
        """Where a table begins: its header, or the comment lines glued on top of it."""
        lines = self.lines
        start = header_line
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        return start

    def _span(self, key: str, index: int) -> tuple[int, int]:
        """Lines [start, end) of the ``index``-th ``[[key]]`` table, its comment included."""
        headers = self._headers()
        mine = [n for n, (_, name, array) in enumerate(headers) if array and name == key]
        at = mine[index]
        start = self._block_start(headers[at][0])
        if at + 1 < len(headers):
            end = max(self._block_start(headers[at + 1][0]), headers[at][0] + 1)
        else:
            end = len(self.lines)
        return start, end

    def _insert_at(self, key: str, before: tuple[str, ...]) -> int:
        """After the last ``[[key]]`` table; else before the first table named in ``before``
        (and its comment); else at the end."""
        count = len(self.tables(key))
        if count:
            return self._span(key, count - 1)[1]
        for line, name, _ in self._headers():
            if name.split(".")[0] in before:
                return self._block_start(line)
        return len(self.lines)

    # -- edits -----------------------------------------------------------------------------

    def append_table(
        self, key: str, table: Mapping[str, Any], comment: str = "", before: tuple[str, ...] = ()
    ) -> None:
        import tomlkit

        body = [f"[[{key}]]\n"]
        for name, value in table.items():
            if value is not None:
                body.append(f"{name} = {tomlkit.item(value).as_string()}\n")
        block = ([f"# {comment}\n"] if comment else []) + body
        lines = self.lines
        at = self._insert_at(key, before)
        if lines and not lines[-1].endswith("\n") and at == len(lines):
            lines[-1] += "\n"
        # One blank line on each side, however the neighbours were spaced.
        if at > 0 and lines[at - 1].strip():
            block.insert(0, "\n")
        if at < len(lines) and lines[at].strip():
            block.append("\n")
        self._replace(lines[:at] + block + lines[at:])

    def remove_table(self, key: str, index: int) -> None:
        lines = self.lines
        start, end = self._span(key, index)
        rest = lines[:start] + lines[end:]
        # Do not leave two blank lines where the table was.
        while (
            start > 0
            and start < len(rest)
            and not rest[start].strip()
            and not rest[start - 1].strip()
        ):
            del rest[start]
        self._replace(rest)

    def _replace(self, lines: list[str]) -> None:
        new = ConfigText(self.path, "".join(lines))
        self.text, self.data = new.text, new.data

    # -- validate and write ------------------------------------------------------------------

    def validate(self) -> Any:
        """The parsed Config; EditError naming the key when the result would be invalid."""
        from gatewayd import config

        try:
            return config.parse(self.data, self.path)
        except GatewayError as exc:
            raise EditError(str(exc), exc) from None

    def write(self) -> None:
        """Replace the file atomically (temp file, fsync, rename), keeping mode and owner."""
        path = self.path
        try:
            st: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            st = None
        tmp = f"{path}.tmp{os.getpid()}"
        mode = st.st_mode & 0o7777 if st else 0o640
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            if st is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, st.st_uid, st.st_gid)
            os.write(fd, self.text.encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# -- devices and buses -------------------------------------------------------------------------


def address_key(kind: str) -> str:
    """The setting that tells two devices of ``kind`` on one bus apart (its family's)."""
    from gatewayd import plugins
    from gatewayd.errors import PluginError

    try:
        return plugins.family(kind).address or "address"
    except PluginError:
        return "address"


def same_address(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.upper() == b.upper()
    return bool(a == b)


def check_new_device(doc: ConfigText, table: Mapping[str, Any]) -> None:
    """Refuse a taken id, or an address already used on the same bus."""
    dev_id = table["id"]
    gateway = doc.data.get("gateway", {})
    if isinstance(gateway, dict) and gateway.get("id") == dev_id:
        raise EditError(t("edit_gateway_id", device=dev_id))
    key = address_key(str(table.get("kind", "")))
    for other in doc.tables("devices"):
        if other.get("id") == dev_id:
            raise EditError(t("edit_device_exists", device=dev_id, bus=other.get("bus")))
        if (
            other.get("bus") == table.get("bus")
            and key in table
            and key in other
            and same_address(other[key], table[key])
        ):
            raise EditError(
                t("edit_taken", key=key, value=table[key], bus=table["bus"], other=other.get("id"))
            )


def add_device(doc: ConfigText, table: Mapping[str, Any], comment: str = "") -> None:
    check_new_device(doc, table)
    doc.append_table("devices", table, comment, before=("rules",))


def add_bus(doc: ConfigText, table: Mapping[str, Any], comment: str = "") -> None:
    if any(b.get("name") == table["name"] for b in doc.tables("buses")):
        raise EditError(t("edit_bus_exists", bus=table["name"]))
    doc.append_table("buses", table, comment, before=("devices", "rules"))


def remove_bus(doc: ConfigText, name: str) -> dict[str, Any]:
    for i, table in enumerate(doc.tables("buses")):
        if table.get("name") == name:
            doc.remove_table("buses", i)
            return table
    names = ", ".join(str(b.get("name")) for b in doc.tables("buses")) or "-"
    raise EditError(t("bus_no_such", bus=name, path=doc.path, names=names))


def remove_device(doc: ConfigText, dev_id: str) -> dict[str, Any]:
    for i, table in enumerate(doc.tables("devices")):
        if table.get("id") == dev_id:
            doc.remove_table("devices", i)
            return table
    raise EditError(t("dev_no_such", device=dev_id, path=doc.path))


def free_name(taken: set[str], base: str) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
