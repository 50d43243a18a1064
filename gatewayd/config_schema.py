"""The tables of gateway.toml the core owns, as schemas (the drivers', families' and rules'
keys come from their own schemas). ``gatewayd.config`` validates with them; the docs and
`gatewayd check` read them from there."""

from __future__ import annotations

from gatewayd.schema import Float, Int, Listen, OneOf, Path, Str, StrOrList
from gatewayd.secrets import SecretFile

#: Gateway and device ids are MQTT topic levels: only characters every broker takes in a topic
#: (NATS closes the connection on a '.' or a space), so the contract is portable across brokers.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
ID_EXPECTED = "an id of letters A-Z a-z, digits 0-9, '_' or '-' (at most 64)"
#: Bus names never reach a topic: they keep the dots they always had.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAME_EXPECTED = "a name of letters, digits, '.', '_' or '-' (at most 64)"
#: The topic prefix: levels of the same characters as an id, separated by single '/'.
PREFIX_PATTERN = r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*"
PREFIX_EXPECTED = (
    "topic levels of letters A-Z a-z, digits 0-9, '_' or '-', separated by '/' "
    "(none leading, trailing or doubled)"
)
URL_PATTERN = r"mqtts?://[^/\s:]+(:\d{1,5})?/?"
URL_EXPECTED = "mqtt://host[:port] or mqtts://host[:port]"
#: Enough for a cluster's nodes or a primary and its standbys.
MAX_URLS = 8
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
#: One broker URL (what `gatewayd init --broker` takes; ``[mqtt] url`` takes a list of them too).
BROKER_URL = Str(pattern=URL_PATTERN, expected=URL_EXPECTED)


GATEWAY_SCHEMA = {
    "id": Str(pattern=ID_PATTERN, expected=ID_EXPECTED, doc="unique; the MQTT client id"),
    "site": Str(default="", doc="free text, shown to people"),
    "data_dir": Path(default="/var/lib/gatewayd", doc="TinyDB state, outbox, audit log"),
}

MQTT_SCHEMA = {
    "url": StrOrList(
        URL_PATTERN,
        URL_EXPECTED,
        most=MAX_URLS,
        doc="one broker, or a list: a cluster's nodes (or a primary and its standby), "
        "tried in turn on connection loss",
    ),
    "topic_prefix": Str(default="pingan/v1", pattern=PREFIX_PATTERN, expected=PREFIX_EXPECTED),
    "username": Str(default=None),
    "password_file": SecretFile(doc="mode 0600"),
    "ca_file": Path(default=None, doc="CA bundle for mqtts://; the system's when absent"),
    "cert_file": Path(default=None, doc="optional client certificate"),
    "key_file": Path(default=None, doc="the client certificate's key"),
    "keepalive": Int(5, 3600, default=30),
    "reconnect_max_seconds": Float(
        0.5, 3600, default=60.0, doc="cap of the jittered backoff between reconnect attempts"
    ),
}

SECURITY_SCHEMA = {
    "command_key_file": SecretFile(32, default=None, doc="32 bytes as 64 hex digits, mode 0600"),
    "commands_per_minute": Int(1, 6000, default=30, doc="per device; beyond it: rate_limited"),
}

METRICS_SCHEMA = {
    "username": Str(default=None, doc="basic auth: the user Prometheus sends; needs password_file"),
    "password_file": SecretFile(doc="basic auth password, mode 0600"),
    "cert_file": Path(default=None, doc="serve https:// with this PEM certificate; needs key_file"),
    "key_file": Path(default=None, doc="the certificate's private key, mode 0600"),
    "listen": Listen(default="127.0.0.1:9108", doc="where Prometheus scrapes"),
}

OUTBOX_SCHEMA = {
    "budget_mb": Int(
        1, 4096, default=64, doc="disk budget; over it the oldest info events go first"
    ),
    "telemetry_buffer": Int(
        0, 1_000_000, default=2000, doc="telemetry messages kept in memory offline"
    ),
    "telemetry_ttl_seconds": Float(1, 86400, default=600.0, doc="older telemetry is not sent"),
    "commit_window_seconds": Float(
        0.005, 5, default=0.1, doc="group commit: batch writes this long"
    ),
}

UPLINK_SCHEMA = {
    "report": OneOf(
        "by_exception", "every_reading", default="by_exception",
        doc="every_reading: the uplink before report by exception, every read sent (comparisons only)",
    ),
    "state_refresh_seconds": Float(
        10, 86400, default=900.0, doc="retained state republished for readings at most this often"
    ),
    "telemetry_max_seconds": Float(
        1, 86400, default=300.0, doc="a reading inside its deadband still goes after this long"
    ),
}  # fmt: skip

BUS_KEYS = {
    "name": Str(pattern=NAME_PATTERN, expected=NAME_EXPECTED),
    "driver": Str(expected="a driver name"),
}

DEVICE_KEYS = {
    "id": Str(pattern=ID_PATTERN, expected=ID_EXPECTED),
    "kind": Str(expected="a device family (gatewayd check --families lists them)"),
    "bus": Str(expected="the name of a [[buses]] entry"),
}
