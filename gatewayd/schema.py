"""A small declarative schema for config tables, shared by the core, drivers and rules.

Each plugin declares its keys as ``{name: Field}``; ``validate`` checks a TOML table against it
once, at the edge, and every error names the file, the key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewayd.errors import ConfigError, SecretFileError

REQUIRED: Any = object()


@dataclass(frozen=True)
class Field:
    """One key: its expected description, a checker that returns the clean value or raises
    ValueError, and a default (``REQUIRED`` when the key must be given)."""

    expected: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    doc: str = ""
    #: The value is a file or directory path: a relative one is taken from the config
    #: file's folder (``base``), never from wherever the daemon or the CLI was started.
    path: bool = False
    #: The value is a list of device ids (or "*"): the config checks each one exists, since
    #: a typo would silently narrow what the setting covers.
    device_ids: bool = False
    #: What ``convert`` accepts, as JSON Schema (``{"type": "integer", "minimum": 1}``): the
    #: generated contract (docs/contract/) says it to the platform. Empty: any JSON value.
    json: Mapping[str, Any] = field(default_factory=dict)


Schema = Mapping[str, Field]


def validate(
    table: Any, schema: Schema, file: str, path: str, base: str | None = None
) -> dict[str, Any]:
    """Check ``table`` against ``schema``; return a new dict with defaults filled in. A
    relative value of a path field is joined to ``base`` (the config file's folder) first."""
    if not isinstance(table, dict):
        raise ConfigError(file, path, "expected a table", table)
    for key in table:
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise ConfigError(file, _join(path, key), f"unknown key (known keys: {known})")
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        where = _join(path, key)
        if key not in table:
            if spec.default is REQUIRED:
                raise ConfigError(file, where, f"missing; expected {spec.expected}")
            out[key] = spec.default
            continue
        value = table[key]
        if spec.path and base is not None:
            value = resolve(value, base)
        try:
            out[key] = spec.convert(value)
        except BadItem as exc:  # one entry of a list: name it, with what an entry must be
            item = f"{where}[{exc.index}]"
            raise ConfigError(file, item, f"expected {exc.expected}", exc.value) from None
        except (ValueError, TypeError):
            raise ConfigError(file, where, f"expected {spec.expected}", table[key]) from None
        except SecretFileError as exc:  # a secret file's own problem, with its fix
            raise ConfigError(file, where, str(exc)) from None
    return out


class BadItem(ValueError):
    """One entry of a list value is wrong: ``validate`` names it (``mqtt.url[1]``)."""

    def __init__(self, index: int, value: Any, expected: str) -> None:
        super().__init__(expected)
        self.index = index
        self.value = value
        self.expected = expected


def resolve(value: Any, base: str) -> Any:
    """A relative path string joined to ``base``; anything else as it was."""
    if isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.normpath(os.path.join(base, value))
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- field constructors -------------------------------------------------------------------


def Int(lo: int, hi: int, default: Any = REQUIRED, doc: str = "") -> Field:
    def convert(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v

    spec = {"type": "integer", "minimum": lo, "maximum": hi}
    return Field(f"an integer {lo}..{hi}", convert, default, doc, json=spec)


def Float(lo: float, hi: float, default: Any = REQUIRED, doc: str = "") -> Field:
    def convert(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError
        return float(v)

    spec = {"type": "number", "minimum": lo, "maximum": hi}
    return Field(f"a number {lo:g}..{hi:g}", convert, default, doc, json=spec)


def Bool(default: Any = REQUIRED, doc: str = "") -> Field:
    def convert(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError
        return v

    return Field("true or false", convert, default, doc, json={"type": "boolean"})


def Str(
    default: Any = REQUIRED,
    pattern: str | None = None,
    expected: str = "a string",
    doc: str = "",
    transform: Callable[[str], str] | None = None,
) -> Field:
    rx = re.compile(pattern) if pattern else None

    def convert(v: Any) -> str:
        if not isinstance(v, str) or (rx is not None and not rx.fullmatch(v)):
            raise ValueError
        return transform(v) if transform else v

    # Python's fullmatch, as an ECMA-262 pattern (which matches anywhere unless anchored).
    spec = {"type": "string", **({"pattern": f"^(?:{pattern})$"} if pattern else {})}
    return Field(expected, convert, default, doc, json=spec)


def OneOf(*choices: str, default: Any = REQUIRED, doc: str = "") -> Field:
    def convert(v: Any) -> str:
        if v not in choices:
            raise ValueError
        return str(v)

    expected = "one of " + ", ".join(f'"{c}"' for c in choices)
    return Field(expected, convert, default, doc, json={"enum": list(choices)})


def StrList(default: Any = REQUIRED, doc: str = "") -> Field:
    def convert(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError
        return tuple(v)

    spec = {"type": "array", "items": {"type": "string"}}
    return Field("a list of strings", convert, default, doc, json=spec)


def StrOrList(
    pattern: str, expected: str, most: int, default: Any = REQUIRED, doc: str = ""
) -> Field:
    """One string, or a list of 1..``most`` different strings, each matching ``pattern``;
    always converted to a tuple (one entry for the single string)."""
    rx = re.compile(pattern)

    def convert(v: Any) -> tuple[str, ...]:
        if isinstance(v, str):
            if not rx.fullmatch(v):
                raise ValueError
            return (v,)
        if not isinstance(v, list) or not 1 <= len(v) <= most:
            raise ValueError
        for i, item in enumerate(v):
            if not isinstance(item, str) or not rx.fullmatch(item):
                raise BadItem(i, item, expected)
            if item in v[:i]:
                raise BadItem(i, item, f"{expected}, each once")
        return tuple(v)

    item = {"type": "string", "pattern": f"^(?:{pattern})$"}
    spec = {"oneOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": most}]}
    return Field(f"{expected}, or a list of 1..{most} of them", convert, default, doc, json=spec)


def DeviceIds(default: Any = REQUIRED, doc: str = "") -> Field:
    """Ids of configured devices, or ``"*"`` for any (checked against [[devices]])."""
    return dataclasses.replace(
        StrList(default, doc), expected='a list of device ids (or "*" for any)', device_ids=True
    )


def Path(default: Any = REQUIRED, doc: str = "") -> Field:
    return dataclasses.replace(
        Str(default, pattern=r".+", expected="a file path", doc=doc), path=True
    )


#: The serial line speeds adapters and devices actually use.
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def Baud(lo: int = 1200, hi: int = 115200, default: Any = REQUIRED, doc: str = "") -> Field:
    """A standard baud rate between ``lo`` and ``hi``: 9601 is a typo, not a speed."""
    rates = tuple(r for r in BAUD_RATES if lo <= r <= hi)

    def convert(v: Any) -> int:
        if isinstance(v, bool) or v not in rates:
            raise ValueError
        return int(v)

    expected = f"a standard baud rate: {', '.join(map(str, rates))}"
    return Field(expected, convert, default, doc, json={"enum": list(rates)})


def Listen(default: Any = REQUIRED, doc: str = "") -> Field:
    """``host:port`` a socket can bind (port 0..65535; 0 takes any free one), or "" for none."""

    def convert(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError
        host, sep, port = v.rpartition(":")
        if v and (not sep or not host or " " in host or not port.isdigit() or int(port) > 65535):
            raise ValueError
        return v

    expected = "host:port with a port 0..65535, or empty to disable"
    return Field(expected, convert, default, doc, json={"type": "string"})


def describe(schema: Schema) -> list[tuple[str, str, str, str]]:
    """(key, expected, default, doc) rows, for docs and `gatewayd check --explain`."""
    rows = []
    for key, spec in schema.items():
        default = "required" if spec.default is REQUIRED else repr(spec.default)
        rows.append((key, spec.expected, default, spec.doc))
    return rows
