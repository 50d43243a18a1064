"""The contract for people: every event type and every action as Markdown tables, generated
from the same sources as the schemas (docs/contract/events.md), so the integrator's list is
never a hand-kept copy that drifts."""

from __future__ import annotations

from typing import Any

from gatewayd.contract.sources import GATEWAY, Sources


def _fields(properties: dict[str, Any]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(properties)) or "—"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def events_md(src: Sources) -> str:
    lines = [
        "# Event types and actions",
        "",
        "Generated from the device families and the gateway's own declarations by",
        "`make contract`; do not edit. The schemas beside it say the same, for programs.",
        "",
        "## Events (`{root}/events/<device>`)",
        "",
        "Urgent events leave the outbox first (every critical and warning event, and those",
        "marked urgent here: access decisions at a door).",
        "",
        "| type | from | severity | urgent | `data` | what |",
        "|---|---|---|---|---|---|",
    ]
    for type_, (owner, spec) in src.events().items():
        who = "the gateway" if owner == GATEWAY else f"`{owner}`"
        severities = src.severities(spec)
        if spec.urgent or "info" not in severities:
            urgent = "yes"
        else:
            urgent = "when not info" if len(severities) > 1 else ""
        severity = ", ".join(severities)
        lines.append(
            f"| `{type_}` | {who} | {severity} | {urgent} | {_fields(dict(spec.data))} |"
            f" {_cell(spec.doc)} |"
        )
    lines += [
        "",
        "## Actions (`{root}/cmd`)",
        "",
        "| action | of | `args` |",
        "|---|---|---|",
    ]
    for name, owners in src.actions().items():
        for owner, schema in sorted(owners.items()):
            who = "the gateway (`device` = its id)" if owner == GATEWAY else f"`{owner}`"
            args = ", ".join(f"`{key}` ({_cell(f.expected)})" for key, f in schema.items())
            lines.append(f"| `{name}` | {who} | {args or '—'} |")
    return "\n".join(lines) + "\n"
