"""The MQTT contract, machine-readable: JSON Schemas of every topic's payload and an AsyncAPI
3.0 document, generated from the device families' descriptors and the gateway's own
declarations, and checked into docs/contract/ (``make contract`` writes them; a test checks
they are current and that every message the demo publishes validates).

A family installed as a plugin (entry point ``gatewayd.families``) appears in the generated
contract with nothing changed here. Nothing in this package does I/O but its command line,
``python -m gatewayd.contract``, which writes the files (or compares them, ``--check``).
"""

from __future__ import annotations

import json
from typing import Any

from gatewayd.contract.asyncapi import document
from gatewayd.contract.payloads import SCHEMAS
from gatewayd.contract.sources import Sources, installed
from gatewayd.contract.tables import events_md

SCHEMA_DIR = "schemas"


def build(src: Sources | None = None) -> dict[str, dict[str, Any] | str]:
    """Every generated file, by its path under docs/contract/: JSON documents, and the
    Markdown page for people (a string)."""
    src = installed() if src is None else src
    files: dict[str, dict[str, Any] | str] = {
        f"{SCHEMA_DIR}/{name}.json": make(src) for name, make in SCHEMAS.items()
    }
    files["asyncapi.json"] = document(src, SCHEMA_DIR)
    files["events.md"] = events_md(src)
    return files


def render(doc: dict[str, Any] | str) -> str:
    """The exact text checked in: sorted keys, two-space indent, UTF-8 as is, a final newline
    (a page's text as it is)."""
    if isinstance(doc, str):
        return doc
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["SCHEMA_DIR", "Sources", "build", "installed", "render"]
