"""Typed, frozen settings of a device, declared once: each field with its schema entry.

A family's ``[[devices]]`` keys are a frozen dataclass whose fields carry their ``Field``
(``gatewayd.schema``): the same declaration validates the TOML table (``schema_of``), documents
the key (`gatewayd check --explain`, gateway.toml, the generated contract) and gives the driver
typed attributes. Settings are also a read-only mapping of key → value, so generic code (the
CLI's editor, ``check``) can walk them without knowing the family.

    @dataclass(frozen=True, kw_only=True)
    class ChargerSettings(Settings):
        unit: int = setting(Int(1, 247, doc="Modbus slave address"))
        profile: str = setting(OneOf("ebc", default="ebc", doc="pile model"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Self

from gatewayd.schema import REQUIRED, Field, Schema


def setting(spec: Field) -> Any:
    """A settings field declared by its schema entry (required when the entry has no
    default)."""
    if spec.default is REQUIRED:
        return dataclasses.field(metadata={"spec": spec})
    return dataclasses.field(default=spec.default, metadata={"spec": spec})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(Mapping[str, Any]):
    """Base of every family's settings: typed attributes, and a mapping of the same."""

    @classmethod
    def schema(cls) -> Schema:
        return schema_of(cls)

    @classmethod
    def from_table(cls, values: Mapping[str, Any]) -> Self:
        """From a table already validated against ``schema()`` (defaults filled in)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def __getitem__(self, key: str) -> Any:
        if key in _names(type(self)):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_names(type(self)))

    def __len__(self) -> int:
        return len(_names(type(self)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoSettings(Settings):
    """A family whose devices need nothing but an id, a kind and a bus."""


def schema_of(cls: type[Settings]) -> Schema:
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}


def _names(cls: type[Settings]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
