"""The house as the platform sees it: which devices it has, where they are, what each accepts.

Built from the config and the device families, for the uplink (``Publisher``: rooms on events
and state, which events go first, the retained ``{root}/devices`` list) and the control
socket. It follows the config through reloads (``config`` is asked each time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd.family import Family
from gatewayd.model import Event

if TYPE_CHECKING:
    from gatewayd.config import Config


class Household:
    def __init__(self, config: Callable[[], Config], families: Mapping[str, Family]) -> None:
        self._config = config
        self.families = families
        #: Device id -> action -> the schema of its args: what the platform may ask of it.
        self.actions: Mapping[str, Mapping[str, Any]] = _Actions(self)

    def family_of(self, device: str) -> Family | None:
        cfg = self._config().device(device)
        return self.families.get(cfg.kind) if cfg is not None else None

    def urgent(self, event: Event) -> bool:
        family = self.family_of(event.device)
        spec = family.events.get(event.type) if family is not None else None
        return spec is not None and spec.urgent

    def room(self, device: str) -> str:
        cfg = self._config().device(device)
        family = self.families.get(cfg.kind) if cfg is not None else None
        return family.room(cfg) if family is not None and cfg is not None else ""

    def devices(self) -> list[dict[str, Any]]:
        """Every configured device: what the platform needs to show and command it."""
        out = []
        for d in self._config().devices:
            family = self.families.get(d.kind)
            if family is None:
                continue
            entry: dict[str, Any] = {"id": d.id, "kind": d.kind, "title": family.title}
            model = family.model(d)
            if model:
                entry["model"] = model
            room = family.room(d)
            if room:
                entry["room"] = room
            entry["supervised"] = family.supervised(d)
            entry["actions"] = sorted(family.actions)
            out.append(entry)
        return out


class _Actions(Mapping[str, Mapping[str, Any]]):
    """The house's devices and their actions, as the config says now (it follows reloads)."""

    def __init__(self, house: Household) -> None:
        self._house = house

    def __getitem__(self, device: str) -> Mapping[str, Any]:
        family = self._house.family_of(device)
        if family is None:
            raise KeyError(device)
        return family.action_schemas()

    def __iter__(self) -> Iterator[str]:
        return (d.id for d in self._house._config().devices)

    def __len__(self) -> int:
        return len(self._house._config().devices)
