"""One JSON Schema per topic's payload, as ``gatewayd.uplink.publisher`` writes it (and, for
``cmd``, as ``gatewayd.commands.gate`` accepts it).

The envelopes the gateway writes whole are closed (``additionalProperties: false``): a member
added to a payload without its declaration fails the contract test instead of reaching the
platform undeclared. docs/contract/README.md says what the platform must tolerate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatewayd.contract.shapes import (
    TIME,
    anchored,
    args_schema,
    closed,
    const_if,
    data_schema,
    one_or_any,
    ref,
    top,
)
from gatewayd.contract.sources import GATEWAY, Sources
from gatewayd.model import SEVERITIES
from gatewayd.schema import REQUIRED

ROOM = {"type": "string", "minLength": 1, "description": "where the device is, for people"}


def _id(src: Sources, what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": anchored(src.id_pattern), "description": what}


def status(src: Sources) -> dict[str, Any]:
    props = {
        "online": {"type": "boolean"},
        "version": {"type": "string", "description": "gatewayd's version"},
        "started": {**TIME, "description": "when this daemon started"},
        "fire_mode": {"type": "boolean", "description": "the house is in fire mode"},
        "site": {"type": "string", "description": "the site, for people ([gateway] site)"},
    }
    online = {"if": {"properties": {"online": {"const": True}}},
              "then": {"required": ["fire_mode", "site"]}}  # fmt: skip
    return top(
        "status",
        "The gateway's presence (retained). The connection's last will says online: false.",
        closed(props, ["online", "version", "started"], allOf=[online]),
    )


def event(src: Sources) -> dict[str, Any]:
    events = src.events()
    props = {
        "id": {"type": "string", "minLength": 1,
               "description": "unique per gateway, stable across retries: drop duplicates"},
        "ts": TIME,
        "device": _id(src, "the device, or the gateway's id for the gateway's own events"),
        "type": {"enum": list(events), "description": "<device kind>.<what happened>"},
        "severity": {"enum": list(SEVERITIES)},
        "data": {"type": "object"},
        "room": ROOM,
    }  # fmt: skip
    rules = [
        const_if("type", t, {"severity": {"enum": src.severities(spec)}, "data": ref(t)})
        for t, (_owner, spec) in events.items()
    ]
    defs = {t: {**data_schema(spec), "x-owner": owner} for t, (owner, spec) in events.items()}
    return top(
        "event",
        "One event (events/<device>): its data is the type's (see $defs).",
        closed(props, ["id", "ts", "device", "type", "severity", "data"], allOf=rules,
               **{"$defs": defs}),
    )  # fmt: skip


def _by_kind(src: Sources, what: Callable[[Any], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kind: what(f) for kind, f in sorted(src.families.items()) if what(f)}


def telemetry(src: Sources) -> dict[str, Any]:
    values = _by_kind(src, lambda f: dict(f.telemetry))
    defs = {kind: closed(props, description=f"telemetry of a {src.families[kind].title}")
            for kind, props in values.items()}  # fmt: skip
    return top(
        "telemetry",
        "Measurements (telemetry/<device>, QoS 0), reported by exception: the device kind's "
        "values that moved (see $defs), its ports' under `ports`, one entry per port that "
        "changed (docs/integrator.md).",
        closed({"ts": TIME, "values": {"anyOf": [ref(k) for k in defs]},
                "ports": {"type": "array", "items": {"anyOf": [ref(k) for k in defs],
                                                      "required": ["port"]}}},
               ["ts", "values"], **{"$defs": defs}),
    )  # fmt: skip


def state(src: Sources) -> dict[str, Any]:
    defs = {
        kind: closed({**f.state, "room": ROOM, "ts": TIME}, ["ts"],
                     description=f"the retained state of a {f.title}")
        for kind, f in sorted(src.families.items())
    }  # fmt: skip
    kept = {p: s for f in src.families.values() for p, s in f.gateway_state.items()}
    defs[GATEWAY] = closed(
        {"ts": TIME}, ["ts"], patternProperties=dict(sorted(kept.items())),
        description="state/<gateway id>: what the drivers keep about the gateway itself",
    )  # fmt: skip
    return top(
        "state",
        "A device's latest state (state/<device>, retained): the members of its kind (see "
        "$defs; the devices list gives each device's kind). An empty retained message clears "
        "the state of a device taken out of the config.",
        {"type": "object", "anyOf": [ref(k) for k in defs], "$defs": defs},
    )


def alarms(src: Sources) -> dict[str, Any]:
    types = src.alarm_types
    part = {"enum": ["active", "cleared"]}
    entry = closed(
        {
            "id": {"type": "string", "description": "<device>/<type>"},
            "device": _id(src, "where the alarm is (the gateway's id for its own)"),
            "type": {"enum": list(types)},
            "severity": {"enum": list(SEVERITIES)},
            "since": TIME,
            "state": {**part, "description": "cleared: latched, waiting for a person's reset"},
            "latched": {"type": "boolean"},
            "acked_by": {"type": ["string", "null"]},
            "acked_at": {"type": ["number", "null"]},
            "updated": {**TIME, "description": "the latest occurrence"},
            "count": {"type": "integer", "minimum": 1},
            "parts": {"type": "object", "additionalProperties": part},
            "data": {"type": "object"},
        },
        ["id", "device", "type", "severity", "since", "acked_by"],
        allOf=[const_if("type", t, {"severity": {"const": s.severity},
                                    "latched": {"const": s.latched}})
               for t, s in types.items()],
    )  # fmt: skip
    return top(
        "alarms",
        "Every alarm now on this gateway's list (retained).",
        closed({"ts": TIME, "active": {"type": "array", "items": ref("alarm")}},
               ["ts", "active"], **{"$defs": {"alarm": entry}}),
    )  # fmt: skip


def devices(src: Sources) -> dict[str, Any]:
    fams = sorted(src.families.items())
    # What devices say of themselves (Family.identity): each kind's own members, none other's.
    said: dict[str, Any] = {}
    for _, f in fams:
        for key, schema in f.identity.items():
            said[key] = schema if said.get(key, schema) == schema else {}
    entry = closed(
        {
            "id": _id(src, "the device's id (its topics end with it)"),
            "kind": {"enum": [k for k, _ in fams]},
            "title": {"type": "string", "description": "what people call one"},
            "model": {"type": "string"},
            "room": ROOM,
            "supervised": {"type": "boolean",
                           "description": "the gateway notices when it goes silent"},
            "actions": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            **{k: {**s, "description": "the device said so (once it answered)"}
               for k, s in sorted(said.items())},
        },
        ["id", "kind", "title", "supervised", "actions"],
        allOf=[const_if("kind", k, {"title": {"const": f.title},
                                    "actions": {"items": {"enum": sorted(f.actions)}},
                                    **dict.fromkeys(said, False), **f.identity})
               for k, f in fams],
    )  # fmt: skip
    return top(
        "devices",
        "Every configured device (retained, republished on change).",
        closed({"ts": TIME, "devices": {"type": "array", "items": ref("device")}},
               ["ts", "devices"], **{"$defs": {"device": entry}}),
    )  # fmt: skip


def cmd(src: Sources) -> dict[str, Any]:
    actions = src.actions()
    text = {"type": "string", "pattern": anchored(src.command_text_pattern)}
    when = {"type": "number", "minimum": 0}
    props = {
        "id": {"type": "string", "pattern": anchored(src.command_id_pattern),
               "description": "never accepted twice"},
        "device": {**text, "description": "a device's id, or the gateway's for its own actions"},
        "action": {"enum": list(actions)},
        "args": {"type": "object", "default": {}},
        "user": {"anyOf": [text, {"const": ""}], "default": "",
                 "description": "who asked (audited)"},
        "iat": {**when, "description": "issued at, Unix seconds"},
        "exp": {**when, "description": "expires at; exp - iat at most 300 s"},
        "sig": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                "description": "HMAC-SHA256 of the canonical form (docs/contract/signing.md)"},
    }  # fmt: skip
    defs = {f"{owner}.{name}": args_schema(args)
            for name, owners in actions.items() for owner, args in owners.items()}  # fmt: skip
    rules = []
    for name, owners in actions.items():
        rule = const_if("action", name, {"args": one_or_any([ref(f"{o}.{name}") for o in owners])})
        if all(any(f.default is REQUIRED for f in args.values()) for args in owners.values()):
            rule["then"]["required"] = ["args"]  # absent args are {}: short of a required one
        rules.append(rule)
    return top(
        "cmd",
        "A signed command (cmd). Its args are the action's (see $defs, by <kind>.<action>); "
        "members not named here are ignored, though covered by the signature.",
        {"type": "object", "properties": props,
         "required": ["id", "device", "action", "iat", "exp", "sig"],
         "allOf": rules, "$defs": defs},
    )  # fmt: skip


def cmd_result(src: Sources) -> dict[str, Any]:
    ok = {"if": {"properties": {"code": {"const": "ok"}}},
          "then": {"properties": {"ok": {"const": True}}},
          "else": {"properties": {"ok": {"const": False}}}}  # fmt: skip
    props = {
        "id": {"type": ["string", "null"],
               "description": "the command's id; null when the payload had none (not JSON)"},
        "ok": {"type": "boolean"},
        "code": {"enum": list(src.codes)},
        "detail": {"type": "string", "description": "for people"},
        "ms": {"type": "number", "minimum": 0, "description": "the time the gateway took"},
        "data": {"type": "object", "description": "what the action answered, when it did"},
    }  # fmt: skip
    return top(
        "cmd/result",
        "The answer to one command (cmd/result): exactly one for every payload on cmd.",
        closed(props, ["id", "ok", "code", "detail", "ms"], allOf=[ok]),
    )


def metrics(src: Sources) -> dict[str, Any]:
    """gatewayd/metrics/push.py's frames, inflated."""
    value = {
        "type": ["number", "string"],
        "description": "the sample's value; NaN, +Inf and -Inf as strings",
    }
    sample: dict[str, Any] = {
        "type": "array",
        "prefixItems": [
            {
                "type": "string",
                "description": "the sample's suffix to the family name (_bucket...)",
            },
            {
                "type": "array",
                "items": {"type": "string"},
                "description": "label names and values, alternating, sorted by name",
            },
            value,
        ],
        "minItems": 3,
        "maxItems": 3,
    }
    family: dict[str, Any] = {
        "type": "array",
        "prefixItems": [
            {"type": "string", "description": "the family's name as the exposition shows it"},
            {"enum": ["counter", "gauge", "histogram", "summary", "untyped"]},
            {"type": "array", "items": sample},
        ],
        "minItems": 3,
        "maxItems": 3,
    }
    common = {
        "t": {"type": "integer", "minimum": 0, "description": "the gateway's clock, Unix ms"},
        "n": {
            "type": "integer",
            "minimum": 1,
            "description": "sequence; a delta applies only on top of frame n - 1",
        },
    }
    key = closed(
        {
            **common,
            "v": {"const": 1},
            "p": {"type": "number", "minimum": 0, "description": "push_seconds"},
            "f": {"type": "array", "items": family},
        },
        ["v", "t", "n", "p", "f"],
        description="a keyframe: every sample, in order",
    )
    added = {
        "type": "array",
        "prefixItems": [{"type": "string"}, family["prefixItems"][1], *sample["prefixItems"]],
        "minItems": 5,
        "maxItems": 5,
    }
    delta = closed(
        {
            **common,
            "d": {
                "type": "array",
                "items": {"type": ["number", "string", "null"]},
                "description": "index, new value (null: the series is gone), ...; indices "
                "count the keyframe's samples, then the added ones in order",
            },
            "a": {
                "type": "array",
                "items": added,
                "description": "series new since frame n - 1: [family, type, suffix, labels, "
                "value]",
            },
        },
        ["t", "n", "d"],
        description="what changed since frame n - 1",
    )
    return top("metrics", "Pushed metrics ({root}/metrics, QoS 0, not retained).",
               {"oneOf": [key, delta]})  # fmt: skip


#: Schema file name -> its generator.
SCHEMAS: dict[str, Callable[[Sources], dict[str, Any]]] = {
    "status": status,
    "event": event,
    "telemetry": telemetry,
    "state": state,
    "alarms": alarms,
    "devices": devices,
    "cmd": cmd,
    "cmd-result": cmd_result,
    "metrics": metrics,
}
