"""JSON Schema building blocks: the declarations' pieces (a config ``Field``, an action's args,
an event's data) turned into draft 2020-12 schemas.

The schemas use only keywords that mean the same in draft-07 (``$defs`` is reached by plain
JSON pointers), so a platform whose tools stop at draft-07 reads them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gatewayd.events import DRILL_FLAG
from gatewayd.family import EventSpec
from gatewayd.schema import REQUIRED, Field, Schema

DRAFT = "https://json-schema.org/draft/2020-12/schema"
TIME = {"type": "number", "minimum": 0, "description": "Unix seconds (fractions allowed)"}


def top(title: str, description: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A schema file's root."""
    return {"$schema": DRAFT, "title": title, "description": description, **body}


def closed(
    properties: Mapping[str, Any], required: Iterable[str] = (), **extra: Any
) -> dict[str, Any]:
    """An object with exactly these members (``required`` among them): what the gateway writes
    whole, where an undeclared member is drift the tests must catch."""
    out: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    if req := list(required):
        out["required"] = req
    return {**out, "additionalProperties": False, **extra}


def anchored(pattern: str) -> str:
    """A Python ``fullmatch`` pattern as an ECMA-262 one (which matches anywhere unless
    anchored)."""
    return f"^(?:{pattern})$"


def field_schema(spec: Field) -> dict[str, Any]:
    """One config/args key: what its checker accepts, its words, its default."""
    out = {**spec.json, "description": spec.doc or spec.expected}
    if spec.default is not REQUIRED and spec.default is not None:
        out["default"] = spec.default
    return out


def args_schema(schema: Schema, doc: str = "") -> dict[str, Any]:
    """A command's ``args``: the gate refuses a key the action does not declare."""
    required = [k for k, f in schema.items() if f.default is REQUIRED]
    out = closed({k: field_schema(f) for k, f in schema.items()}, required)
    return {**out, "description": doc} if doc else out


#: Any event may be a fire drill's (gatewayd.drill): a platform must not act on it as a fire.
DRILL = {"const": True, "description": "a fire drill's, not a real one (docs/alarms.md)"}


def data_schema(spec: EventSpec) -> dict[str, Any]:
    """An event type's ``data``: the members its descriptor declares (and the drill flag),
    none other."""
    return closed({**spec.data, DRILL_FLAG: DRILL}, description=spec.doc)


def const_if(key: str, value: str, then: Mapping[str, Any]) -> dict[str, Any]:
    """``if`` the member ``key`` is ``value`` ``then`` these members' schemas apply."""
    return {
        "if": {"properties": {key: {"const": value}}, "required": [key]},
        "then": {"properties": dict(then)},
    }


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def one_or_any(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema, or any of several (distinct ones only: sorted for a stable output)."""
    unique = {repr(sorted(s.items())): s for s in schemas}
    found = [unique[k] for k in sorted(unique)]
    return found[0] if len(found) == 1 else {"anyOf": found}
