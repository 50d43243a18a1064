"""gateway.toml: parsed once with tomllib, validated into frozen objects.

The shape is a contract with installers' provisioning scripts (shared/contract/config.md).
Drivers and rules contribute their own keys through their schemas; unknown keys are errors.
Every error names the file, the key path and what was expected. Defaults live here and in the
plugins' schemas, nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gatewayd import plugins
from gatewayd.config_schema import (
    BUS_KEYS,
    DEFAULT_PORTS,
    DEVICE_KEYS,
    GATEWAY_SCHEMA,
    METRICS_SCHEMA,
    MQTT_SCHEMA,
    OUTBOX_SCHEMA,
    SECURITY_SCHEMA,
    UPLINK_SCHEMA,
)
from gatewayd.driver import BusConfig, DeviceConfig
from gatewayd.errors import ConfigError, PluginError
from gatewayd.family import Family
from gatewayd.schema import Field, resolve, validate
from gatewayd.secrets import Secret


def folder_of(config_path: str) -> str:
    """Where the relative paths of a config file start: the file's own folder."""
    return os.path.dirname(os.path.abspath(config_path))


def resolve_path(value: str, config_path: str) -> str:
    """A path as written in ``config_path`` (relative to its folder), made absolute."""
    resolved: str = resolve(value, folder_of(config_path))
    return resolved


TOP_LEVEL = (
    "gateway", "mqtt", "security", "metrics", "outbox", "uplink", "buses", "devices", "rules",
)  # fmt: skip


@dataclass(frozen=True)
class BrokerUrl:
    """One broker node of ``[mqtt] url``."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        """As people write it, with the port always shown (logs, `gatewayd check`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MqttConfig:
    #: The broker nodes in the order given: the link starts on the first and moves to the next
    #: only when a connection fails or is lost (gatewayd.uplink.link).
    brokers: tuple[BrokerUrl, ...]
    tls: bool
    topic_prefix: str
    username: str | None
    password: Secret | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    keepalive: int
    reconnect_max_seconds: float


@dataclass(frozen=True)
class OutboxConfig:
    budget_mb: int
    telemetry_buffer: int
    telemetry_ttl_seconds: float
    commit_window_seconds: float


@dataclass(frozen=True)
class UplinkConfig:
    """Report by exception (gatewayd.uplink.exception, docs/integrator.md)."""

    report: str = "by_exception"
    state_refresh_seconds: float = 900.0
    telemetry_max_seconds: float = 300.0

    @property
    def every_reading(self) -> bool:
        return self.report == "every_reading"


@dataclass(frozen=True)
class Config:
    path: str
    gateway_id: str
    site: str
    data_dir: str
    mqtt: MqttConfig
    command_key: Secret | None
    commands_per_minute: int
    metrics_listen: str
    metrics_username: str | None
    metrics_password: Secret | None
    metrics_cert_file: str | None
    metrics_key_file: str | None
    outbox: OutboxConfig
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]
    rules: Mapping[str, Mapping[str, Any]]
    uplink: UplinkConfig = UplinkConfig()

    @property
    def topic_root(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.gateway_id}"

    def device(self, device_id: str) -> DeviceConfig | None:
        for d in self.devices:
            if d.id == device_id:
                return d
        return None

    def bus(self, name: str) -> BusConfig:
        return next(b for b in self.buses if b.name == name)

    def devices_on(self, bus: str) -> tuple[DeviceConfig, ...]:
        """The devices of one bus, in config order: what its driver is built from."""
        return tuple(d for d in self.devices if d.bus == bus)

    def keeping_identity(self, running: Config) -> Config:
        """This config with the running one's identity: who the gateway is to the broker and
        where its state lives change only with a restart (a reload keeps them)."""
        return dataclasses.replace(
            self, gateway_id=running.gateway_id, mqtt=running.mqtt, data_dir=running.data_dir,
            command_key=running.command_key,
        )  # fmt: skip


def load(path: str) -> Config:
    """Read and validate ``path``; raise ConfigError naming what is wrong."""
    name = path
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML ({exc})") from None
    return parse(raw, name)


def parse(raw: Mapping[str, Any], name: str = "gateway.toml") -> Config:
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(name, key, f"unknown section (known: {', '.join(TOP_LEVEL)})")
    gw = _section(raw, "gateway", GATEWAY_SCHEMA, name)
    mq = _section(raw, "mqtt", MQTT_SCHEMA, name)
    sec = _section(raw, "security", SECURITY_SCHEMA, name)
    met = _section(raw, "metrics", METRICS_SCHEMA, name)
    box = _section(raw, "outbox", OUTBOX_SCHEMA, name)
    up = _section(raw, "uplink", UPLINK_SCHEMA, name)
    if (met["username"] is None) != (met["password_file"] is None):
        raise ConfigError(name, "metrics.password_file", "username and password_file go together")
    if (met["cert_file"] is None) != (met["key_file"] is None):
        raise ConfigError(name, "metrics.key_file", "cert_file and key_file go together")
    mqtt = _mqtt(mq, name)
    buses = _buses(raw.get("buses", []), name)
    devices = _devices(raw.get("devices", []), buses, gw["id"], name)
    rules = _rules(raw.get("rules", {}), name)
    for i, bus in enumerate(buses):
        wrong = plugins.load_driver(bus.driver).check_rules(bus.settings, rules)
        if wrong is not None:
            raise ConfigError(name, f"buses[{i}].{wrong[0]}", *wrong[1:])
    _known_devices(rules, devices, name)
    return Config(
        path=name,
        gateway_id=gw["id"],
        site=gw["site"],
        data_dir=gw["data_dir"],
        mqtt=mqtt,
        command_key=sec["command_key_file"],
        commands_per_minute=sec["commands_per_minute"],
        metrics_listen=met["listen"],
        metrics_username=met["username"],
        metrics_password=met["password_file"],
        metrics_cert_file=met["cert_file"],
        metrics_key_file=met["key_file"],
        outbox=OutboxConfig(**box),
        buses=buses,
        devices=devices,
        rules=rules,
        uplink=UplinkConfig(**up),
    )


def _section(
    raw: Mapping[str, Any], key: str, schema: Mapping[str, Field], name: str
) -> dict[str, Any]:
    return _validate(raw.get(key, {}), schema, name, key)


def _validate(table: Any, schema: Mapping[str, Field], name: str, path: str) -> dict[str, Any]:
    return validate(table, schema, name, path, base=folder_of(name))


def _mqtt(mq: dict[str, Any], name: str) -> MqttConfig:
    urls: tuple[str, ...] = mq["url"]
    brokers = tuple(
        _broker(url, name, f"mqtt.url[{i}]" if len(urls) > 1 else "mqtt.url")
        for i, url in enumerate(urls)
    )
    if mq["password_file"] is not None and mq["username"] is None:
        raise ConfigError(name, "mqtt.username", "missing; a password_file needs a username")
    if (mq["cert_file"] is None) != (mq["key_file"] is None):
        raise ConfigError(name, "mqtt.key_file", "cert_file and key_file go together")
    # One login and one TLS setup serve every node (paho keeps one TLS context per client).
    tls = brokers[0].tls
    for i, b in enumerate(brokers):
        if b.tls != tls:
            raise ConfigError(
                name, f"mqtt.url[{i}]", "every url needs the same scheme as the first", urls[i]
            )
    if not tls and (mq["ca_file"] or mq["cert_file"]):
        raise ConfigError(name, "mqtt.url", "ca_file/cert_file need an mqtts:// url", urls[0])
    return MqttConfig(
        brokers=brokers,
        tls=tls,
        topic_prefix=mq["topic_prefix"],
        username=mq["username"],
        password=mq["password_file"],
        ca_file=mq["ca_file"],
        cert_file=mq["cert_file"],
        key_file=mq["key_file"],
        keepalive=mq["keepalive"],
        reconnect_max_seconds=mq["reconnect_max_seconds"],
    )


def _broker(text: str, name: str, path: str) -> BrokerUrl:
    expected = "mqtt://host[:port] or mqtts://host[:port] with a port 1..65535"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:  # a port over 65535, a stray "[" in the host
        raise ConfigError(name, path, f"expected {expected}", text) from None
    if not url.hostname or port == 0:
        raise ConfigError(name, path, f"expected {expected}", text)
    return BrokerUrl(url.hostname, port or DEFAULT_PORTS[url.scheme], url.scheme == "mqtts")


def _list_of_tables(value: Any, name: str, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(name, key, f"expected [[{key}]] tables", value)
    return value


def _buses(value: Any, name: str) -> tuple[BusConfig, ...]:
    out: list[BusConfig] = []
    for i, table in enumerate(_list_of_tables(value, name, "buses")):
        path = f"buses[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(name, path, "expected a table", table)
        head = {k: table[k] for k in BUS_KEYS if k in table}
        head = _validate(head, BUS_KEYS, name, path)
        try:
            driver = plugins.load_driver(head["driver"])
        except PluginError as exc:
            raise ConfigError(name, f"{path}.driver", str(exc)) from None
        rest = {k: v for k, v in table.items() if k not in BUS_KEYS}
        settings = _validate(rest, driver.bus_schema, name, path)
        problem = driver.check_bus(settings)
        if problem:
            raise ConfigError(name, path, problem)
        if any(b.name == head["name"] for b in out):
            raise ConfigError(
                name, f"{path}.name", "a bus of this name exists already", head["name"]
            )
        out.append(BusConfig(head["name"], head["driver"], settings))
    return tuple(out)


def _devices(
    value: Any, buses: tuple[BusConfig, ...], gateway_id: str, name: str
) -> tuple[DeviceConfig, ...]:
    out: list[DeviceConfig] = []
    by_name = {b.name: b for b in buses}
    for i, table in enumerate(_list_of_tables(value, name, "devices")):
        path = f"devices[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(name, path, "expected a table", table)
        head = _validate({k: table[k] for k in DEVICE_KEYS if k in table}, DEVICE_KEYS, name, path)
        kinds = plugins.families()
        if head["kind"] not in kinds:
            expected = "one of " + ", ".join(sorted(kinds))
            raise ConfigError(name, f"{path}.kind", expected, head["kind"])
        bus = by_name.get(head["bus"])
        if bus is None:
            known = ", ".join(by_name) or "none configured"
            raise ConfigError(
                name,
                f"{path}.bus",
                f"expected the name of a [[buses]] entry ({known})",
                head["bus"],
            )
        rest = {k: v for k, v in table.items() if k not in DEVICE_KEYS}
        settings = _settings(rest, kinds[head["kind"]], bus, name, path)
        if head["id"] == gateway_id or any(d.id == head["id"] for d in out):
            raise ConfigError(name, f"{path}.id", "this id is taken already", head["id"])
        out.append(DeviceConfig(head["id"], head["kind"], head["bus"], settings))
    return tuple(out)


def _settings(
    table: Mapping[str, Any], fam: Family, bus: BusConfig, name: str, path: str
) -> Mapping[str, Any]:
    """The device's keys: its family's own typed settings on the family's own buses; on another
    driver's bus (a Zigbee smoke detector), the keys that driver declares for the kind."""
    driver = plugins.load_driver(bus.driver)
    own = driver.device_schemas.get(fam.kind)
    if own is not None:
        return _validate(table, own, name, path)
    if bus.driver not in fam.buses:
        where = " or ".join(fam.buses)
        raise ConfigError(
            name,
            f"{path}.kind",
            f"bus {bus.name!r} ({bus.driver}) has no {fam.kind} devices (a {fam.title} sits "
            f"on a {where} bus)",
        )
    return fam.Settings.from_table(_validate(table, fam.schema(), name, path))


def _known_devices(
    rules: Mapping[str, Mapping[str, Any]], devices: tuple[DeviceConfig, ...], name: str
) -> None:
    """Every device id a rule setting names is configured: a typo in a fire linkage list
    would quietly leave that detector out of it."""
    schemas = {cls.name: cls.schema for cls in plugins.rule_classes()}
    known = [d.id for d in devices]
    for rule, settings in rules.items():
        for key, spec in schemas.get(rule, {}).items():
            if not spec.device_ids:
                continue
            for dev in settings.get(key, ()):
                if dev != "*" and dev not in known:
                    raise ConfigError(
                        name,
                        f"rules.{rule}.{key}",
                        f"no device {dev!r} in this config (devices: {', '.join(known) or 'none'})",
                    )


def _rules(value: Any, name: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ConfigError(name, "rules", "expected [rules.<name>] tables", value)
    classes = {cls.name: cls for cls in plugins.rule_classes()}
    for key in value:
        if key not in classes:
            raise ConfigError(
                name, f"rules.{key}", f"unknown rule (known: {', '.join(sorted(classes))})"
            )
    return {
        rule_name: _validate(value.get(rule_name, {}), cls.schema, name, f"rules.{rule_name}")
        for rule_name, cls in classes.items()
    }
