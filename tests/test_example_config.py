"""The example gateway.toml at the repository root stays valid and complete as drivers and
rules evolve: it parses with the real schemas, and it mentions every key they accept."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from gatewayd import config, config_schema, plugins
from gatewayd.cli.main import cli
from tests.harness import REPO

EXAMPLE = REPO / "gateway.toml"
SECRETS = {
    "/etc/gatewayd/mqtt.password": "s3cret-password",
    "/etc/gatewayd/command.key": os.urandom(32).hex(),
    "/etc/gatewayd/door-main.key": os.urandom(16).hex(),
}


def with_temp_secrets(tmp_path: Path) -> str:
    text = EXAMPLE.read_text()
    for path, content in SECRETS.items():
        assert path in text, f"the example no longer names {path}"
        local = tmp_path / Path(path).name
        local.write_text(content + "\n")
        local.chmod(0o600)
        text = text.replace(f'"{path}"', f'"{local}"')
    return text


def test_example_parses_with_every_builtin_driver_and_rule(tmp_path: Path) -> None:
    text = with_temp_secrets(tmp_path)
    cfg = config.parse(tomllib.loads(text), "gateway.toml")
    assert cfg.gateway_id == "xz-liushu-017" and cfg.mqtt.tls and cfg.mqtt.brokers[0].port == 8883
    assert {b.driver for b in cfg.buses} >= {"modbus", "serial", "ble"}
    assert {d.kind for d in cfg.devices} == {"charger", "smoke", "door_lock"}
    door = cfg.device("door-main")
    assert door is not None and door.settings["escape_route"] is True
    assert cfg.rules["charger_overheat"]["port_max_celsius"] == 60
    assert set(cfg.rules) == {r.name for r in plugins.rule_classes()}


def sections(text: str) -> list[tuple[str, str]]:
    """(header, body) in file order; the body keeps commented-out keys."""
    out: list[tuple[str, str]] = []
    header, body = "", []
    for line in text.splitlines():
        m = re.match(r"^\[\[?([^\]]+)\]\]?", line)
        if m:
            out.append((header, "\n".join(body)))
            header, body = m.group(1).strip(), []
        else:
            body.append(line)
    out.append((header, "\n".join(body)))
    return out


def mentioned(body: str) -> set[str]:
    return set(re.findall(r"^#?\s*([a-z_]+)\s*=", body, flags=re.M))


def test_example_mentions_every_key_of_every_schema() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    missing: list[str] = []
    parts = sections(EXAMPLE.read_text())
    core = {
        "gateway": config_schema.GATEWAY_SCHEMA,
        "mqtt": config_schema.MQTT_SCHEMA,
        "security": config_schema.SECURITY_SCHEMA,
        "metrics": config_schema.METRICS_SCHEMA,
        **({"outbox": config_schema.OUTBOX_SCHEMA} if hasattr(config_schema, "OUTBOX_SCHEMA") else {}),
        "uplink": config_schema.UPLINK_SCHEMA,
    }
    for name, schema in core.items():
        body = next((b for h, b in parts if h == name), None)
        if body is None:
            missing.append(f"[{name}]")
            continue
        missing += [f"[{name}] {k}" for k in schema if k not in mentioned(body)]
    bus_bodies = [b for h, b in parts if h == "buses"]
    for table, body in zip(raw["buses"], bus_bodies, strict=True):
        driver = plugins.load_driver(table["driver"])
        missing += [
            f"[[buses]] {table['name']}: {k}" for k in driver.bus_schema if k not in mentioned(body)
        ]
    buses = {b["name"]: b["driver"] for b in raw["buses"]}
    dev_bodies = [b for h, b in parts if h == "devices"]
    for table, body in zip(raw["devices"], dev_bodies, strict=True):
        schema: Any = plugins.family(table["kind"]).schema()
        missing += [f"[[devices]] {table['id']}: {k}" for k in schema if k not in mentioned(body)]
    for rule in plugins.rule_classes():
        body = next((b for h, b in parts if h == f"rules.{rule.name}"), None)
        if body is None:
            missing.append(f"[rules.{rule.name}]")
            continue
        missing += [f"[rules.{rule.name}] {k}" for k in rule.schema if k not in mentioned(body)]
    for name in ("modbus", "serial", "ble"):
        if name in plugins.driver_names() and name not in buses.values():
            missing.append(f"a [[buses]] entry for the {name} driver")
    assert not missing, "gateway.toml does not show: " + "; ".join(missing)


def test_example_lists_with_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    cfg = tmp_path / "gateway.toml"
    cfg.write_text(with_temp_secrets(tmp_path))
    result = CliRunner().invoke(cli, ["device", "list", "-c", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    import json

    assert [d["id"] for d in json.loads(result.output)] == ["pile-1", "smoke-301", "door-main"]
