"""Loading device families, drivers and rules through entry points.

Built-ins are registered in pyproject.toml exactly as a third party's package would register
its own, so there is one loading path. Modules are imported only when a config names them.

The entry points are read straight from the installed distributions' ``entry_points.txt``
(the format importlib.metadata reads): importing importlib.metadata costs about 20 ms of the
daemon's start-up on a Pi-class CPU, for nothing this module needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from gatewayd.errors import PluginError

if TYPE_CHECKING:
    from gatewayd.driver import Driver
    from gatewayd.family import Family
    from gatewayd.schema import Schema
    from rules.engine import Rule

DRIVER_GROUP = "gatewayd.drivers"
RULE_GROUP = "gatewayd.rules"
FAMILY_GROUP = "gatewayd.families"
KINDS = {DRIVER_GROUP: "driver", RULE_GROUP: "rule", FAMILY_GROUP: "device family"}


@cache
def _entry_points() -> dict[str, dict[str, str]]:
    """group -> name -> "module:attr", over every distribution on sys.path; like
    importlib.metadata, the first distribution of a given name on sys.path wins."""
    groups: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in sorted(names):
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            dist = name.rsplit("-", 1)[0].split("-")[0].lower().replace("_", "-")
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            _parse(text, groups)
    return groups


def _parse(text: str, groups: dict[str, dict[str, str]]) -> None:
    group: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = groups.setdefault(line[1:-1].strip(), {})
        elif group is not None and "=" in line:
            key, _, value = line.partition("=")
            group.setdefault(key.strip(), value.strip())


def resolve(value: str) -> Any:
    """The object "module:attr" names (an entry point's value, a declared hook), imported."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _load(group: str, name: str, value: str, base: type) -> Any:
    """Import the class an entry point names and check it is a ``base``."""
    kind = KINDS.get(group, group)
    try:
        obj = resolve(value)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{kind} {name!r} ({value}) cannot be loaded: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{kind} {name!r} ({value}) is not a gatewayd {base.__name__}")
    return obj


def driver_names() -> tuple[str, ...]:
    return tuple(sorted(_entry_points().get(DRIVER_GROUP, {})))


@cache
def load_driver(name: str) -> type[Driver]:
    from gatewayd.driver import Driver

    value = _entry_points().get(DRIVER_GROUP, {}).get(name)
    if value is None:
        raise PluginError(f"no driver named {name!r} (installed: {', '.join(driver_names())})")
    cls: type[Driver] = _load(DRIVER_GROUP, name, value, Driver)
    return cls


@cache
def rule_classes() -> tuple[type[Rule], ...]:
    from rules.engine import Rule

    found: list[type[Rule]] = []
    for name, value in sorted(_entry_points().get(RULE_GROUP, {}).items()):
        found.append(_load(RULE_GROUP, name, value, Rule))
    return tuple(found)


class Families(Mapping[str, "Family"]):
    """Every installed device family, by kind, each imported the first time it is asked for
    (one instance each: families hold no state). Names and ``in`` cost no import, so a house
    without locks never loads the lock family (start-up, issue 15); iterating ``values()`` or
    ``items()`` loads them all."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        self._entries = dict(sorted(entries.items()))
        self._loaded: dict[str, Family] = {}

    def __getitem__(self, kind: str) -> Family:
        family = self._loaded.get(kind)
        if family is None:
            from gatewayd.family import Family

            value = self._entries[kind]  # KeyError: no such family, as a dict would say
            cls: type[Family] = _load(FAMILY_GROUP, kind, value, Family)
            if cls.kind != kind:
                raise PluginError(f"device family {kind!r} ({value}) declares kind {cls.kind!r}")
            family = self._loaded[kind] = cls()
        return family

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def loaded(self) -> list[Family]:
        """The families imported so far (what the house has used), without importing more."""
        return list(self._loaded.values())


@cache
def families() -> Families:
    """Every installed device family, by kind (imported on first use, see ``Families``)."""
    return Families(_entry_points().get(FAMILY_GROUP, {}))


def kinds_on(driver: str) -> dict[str, Schema]:
    """The device kinds a bus with ``driver`` carries, with the keys of their devices there:
    each family's own (``Family.buses``), and those the driver declares for others."""
    cls = load_driver(driver)
    own = {k: f.schema() for k, f in families().items() if driver in f.buses}
    return {**own, **cls.device_schemas}


def family(kind: str) -> Family:
    found = families().get(kind)
    if found is None:
        known = ", ".join(sorted(families())) or "none"
        raise PluginError(f"no device family {kind!r} (installed: {known})")
    return found


@cache
def commands(group: str) -> dict[str, str]:
    """The subcommands of `gatewayd GROUP` ("scan", "pair") the installed drivers and device
    families declare (their ``commands``): name -> "module:attr", nothing imported yet. A name
    two of them declare is refused, naming both."""
    declared = [(f"driver {n}", load_driver(n).commands) for n in driver_names()]
    declared += [(f"device family {k}", f.commands) for k, f in families().items()]
    found: dict[str, str] = {}
    owner: dict[str, str] = {}
    for who, groups in declared:
        for name, value in groups.get(group, {}).items():
            if name in owner:
                raise PluginError(
                    f"`gatewayd {group} {name}` is declared twice: by {owner[name]} and by {who}"
                )
            found[name], owner[name] = value, who
    return found
