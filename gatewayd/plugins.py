"""Loading drivers and rules through entry points.

Built-ins are registered in pyproject.toml exactly as a third party's package would register
its own, so there is one loading path. Modules are imported only when a config names them.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from gatewayd.errors import PluginError

if TYPE_CHECKING:
    from gatewayd.driver import Driver
    from rules.engine import Rule

DRIVER_GROUP = "gatewayd.drivers"
RULE_GROUP = "gatewayd.rules"


@cache
def driver_names() -> tuple[str, ...]:
    return tuple(sorted(ep.name for ep in entry_points(group=DRIVER_GROUP)))


@cache
def load_driver(name: str) -> type[Driver]:
    from gatewayd.driver import Driver

    for ep in entry_points(group=DRIVER_GROUP, name=name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise PluginError(f"driver {name!r} ({ep.value}) is not a gatewayd Driver")
        return cls
    raise PluginError(f"no driver named {name!r} (installed: {', '.join(driver_names())})")


@cache
def rule_classes() -> tuple[type[Rule], ...]:
    from rules.engine import Rule

    found: list[type[Rule]] = []
    for ep in sorted(entry_points(group=RULE_GROUP), key=lambda e: e.name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Rule)):
            raise PluginError(f"rule {ep.name!r} ({ep.value}) is not a gatewayd Rule")
        found.append(cls)
    return tuple(found)
