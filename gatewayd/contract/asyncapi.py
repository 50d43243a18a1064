"""The AsyncAPI 3.0 document of the MQTT contract: channels (the topics, from
``gatewayd.uplink.topics``), their messages (payloads: the JSON Schema files beside it), and the
operations with their MQTT QoS and retain bindings, seen from the gateway (it sends everything
but commands, which it receives and answers on cmd/result)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatewayd.contract.sources import Sources
from gatewayd.uplink.topics import Topics

#: The JSON Schema dialect of the payload files, as AsyncAPI's ``schemaFormat`` names it.
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
BINDING_VERSION = "0.2.0"


@dataclass(frozen=True)
class Channel:
    name: str  # the channel's and the operation's key
    message: str  # the message's key
    schema: str  # the payload's schema file (without .json)
    send: bool  # the gateway sends it (else receives it)
    qos: int
    retain: bool
    summary: str


CHANNELS = (
    Channel("status", "status", "status", True, 1, True,
            "The gateway's presence; the last will says it went offline."),
    Channel("events", "event", "event", True, 1, False,
            "One event of a device, or of the gateway itself (device = the gateway id); "
            "at least once, in order: drop duplicates by id."),
    Channel("telemetry", "telemetry", "telemetry", True, 0, False,
            "Measurements, best effort."),
    Channel("state", "state", "state", True, 1, True,
            "A device's latest state; an empty retained message clears a removed device's."),
    Channel("alarms", "alarms", "alarms", True, 1, True,
            "Every alarm now active on this gateway."),
    Channel("devices", "devices", "devices", True, 1, True,
            "Every configured device, what it is and what it accepts."),
    Channel("cmd", "command", "cmd", False, 1, False,
            "A signed command from the platform."),
    Channel("cmdResult", "commandResult", "cmd-result", True, 1, False,
            "The answer to one command: exactly one for every payload on cmd."),
)  # fmt: skip


def addresses(prefix: str) -> dict[str, str]:
    """Channel name -> address, with ``{gateway}`` and ``{device}`` parameters."""
    t = Topics(f"{prefix}/{{gateway}}")
    return {
        "status": t.status,
        "events": t.event("{device}"),
        "telemetry": t.telemetry("{device}"),
        "state": t.state("{device}"),
        "alarms": t.alarms,
        "devices": t.devices,
        "cmd": t.cmd,
        "cmdResult": t.cmd_result,
    }


def _parameters(address: str) -> dict[str, Any]:
    words = {
        "gateway": "The gateway's id ([gateway] id in its gateway.toml).",
        "device": "A device's id, as the devices list gives it (the gateway's own id for the "
        "gateway's events and state).",
    }
    return {p: {"description": d} for p, d in words.items() if f"{{{p}}}" in address}


def _operation(ch: Channel) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": "send" if ch.send else "receive",
        "channel": {"$ref": f"#/channels/{ch.name}"},
        "messages": [{"$ref": f"#/channels/{ch.name}/messages/{ch.message}"}],
        "summary": ch.summary,
        "bindings": {
            "mqtt": {"qos": ch.qos, "retain": ch.retain, "bindingVersion": BINDING_VERSION}
        },
    }
    if ch.name == "cmd":
        op["reply"] = {
            "channel": {"$ref": "#/channels/cmdResult"},
            "messages": [{"$ref": "#/channels/cmdResult/messages/commandResult"}],
        }
    return op


def document(src: Sources, schema_dir: str) -> dict[str, Any]:
    where = addresses(src.prefix)
    channels = {
        ch.name: {
            "address": where[ch.name],
            "summary": ch.summary,
            "messages": {ch.message: {"$ref": f"#/components/messages/{ch.message}"}},
            **({"parameters": p} if (p := _parameters(where[ch.name])) else {}),
        }
        for ch in CHANNELS
    }
    messages = {
        ch.message: {
            "name": ch.message,
            "title": ch.schema,
            "summary": ch.summary,
            "contentType": "application/json",
            "payload": {
                "schemaFormat": SCHEMA_FORMAT,
                "schema": {"$ref": f"{schema_dir}/{ch.schema}.json"},
            },
        }
        for ch in CHANNELS
    }
    kinds = ", ".join(f"{k} ({f.title})" for k, f in sorted(src.families.items()))
    offline = '{"online":false,"version":"<gatewayd version>","started":<ts>}'
    will = {"topic": where["status"], "qos": 1, "retain": True, "message": offline}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gatewayd ⇄ platform MQTT contract",
            "version": "1",
            "description": (
                "What a gatewayd gateway publishes to the platform's broker and the commands "
                "it accepts (contract v1). Generated from the device families installed with "
                f"it: {kinds}. Topics start with <topic_prefix>/<gateway id>; the default "
                f"prefix is {src.prefix}. Gateway and device ids are letters A-Z a-z, digits, "
                "'_' and '-' (the prefix: levels of those, separated by '/'): characters every "
                "broker takes in a topic. All payloads are UTF-8 JSON objects; times are Unix "
                "seconds. Command signing: signing.md. Compatibility policy: README.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "platform": {
                "host": "{broker}",
                "protocol": "mqtt",
                "description": "The platform's broker; gateways connect out to it "
                "(mqtts:// with TLS). A gateway may list several nodes (a cluster's, or a "
                "primary and its standby): it stays on the one that works and moves to the next "
                "on connection loss, then republishes its retained topics there.",
                "variables": {"broker": {"description": "host:port (one of [mqtt] url)"}},
                "bindings": {
                    "mqtt": {
                        "cleanSession": True,
                        "lastWill": will,
                        "bindingVersion": BINDING_VERSION,
                    }
                },
            }
        },
        "channels": channels,
        "operations": {ch.name: _operation(ch) for ch in CHANNELS},
        "components": {"messages": messages},
    }
