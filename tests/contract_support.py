"""The checked-in contract (docs/contract/), read as an integrator would: the AsyncAPI document
routes a topic to its channel and message, the message names its payload's schema file, and
jsonschema validates. Nothing here imports the generator: what is tested is the files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from tests.harness import REPO

CONTRACT = REPO / "docs" / "contract"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def load(name: str) -> Any:
    return json.loads((CONTRACT / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Route:
    channel: str
    address: re.Pattern[str]
    schema_file: str  # relative to docs/contract
    qos: int
    retain: bool
    send: bool  # the gateway sends it


def pointer(doc: Any, ref: str) -> Any:
    """Follow a local ``#/a/b`` reference."""
    assert ref.startswith("#/"), ref
    for part in ref[2:].split("/"):
        doc = doc[part.replace("~1", "/").replace("~0", "~")]
    return doc


@cache
def routes() -> tuple[Route, ...]:
    api = load("asyncapi.json")
    found = []
    for name, op in api["operations"].items():
        channel = pointer(api, op["channel"]["$ref"])
        (msg_ref,) = op["messages"]
        message = pointer(api, msg_ref["$ref"])
        if "$ref" in message:
            message = pointer(api, message["$ref"])
        params = re.escape(channel["address"]).replace(r"\{", "{").replace(r"\}", "}")
        rx = re.compile(re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", params) + "$")
        mqtt = op["bindings"]["mqtt"]
        found.append(Route(name, rx, message["payload"]["schema"]["$ref"], mqtt["qos"],
                           mqtt["retain"], op["action"] == "send"))  # fmt: skip
    return tuple(found)


def route(topic: str) -> tuple[Route, dict[str, str]]:
    """The channel a topic belongs to, with its parameters (gateway, device)."""
    hits = [(r, m.groupdict()) for r in routes() if (m := r.address.match(topic))]
    assert len(hits) == 1, f"{topic}: {len(hits)} channels of the AsyncAPI document match"
    return hits[0]


@cache
def validator(schema_file: str, definition: str | None = None) -> Draft202012Validator:
    """A validator of a schema file, or of one of its ``$defs`` (an event type's data, a
    device kind's state)."""
    schema = load(schema_file)
    if definition is not None:
        assert definition in schema["$defs"], f"{schema_file} has no $defs/{definition}"
        schema = {"$schema": DRAFT, "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema)


def problems(schema_file: str, body: Any, definition: str | None = None) -> list[str]:
    """Every way ``body`` breaks the schema, each with where in the payload."""
    errors = validator(schema_file, definition).iter_errors(body)
    return [f"at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def valid(schema_file: str, body: Any, definition: str | None = None) -> bool:
    return not problems(schema_file, body, definition)
