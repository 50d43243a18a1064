"""Config errors name the file, the key path and what was expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd import config
from gatewayd.errors import ConfigError


def write(tmp: Path, body: str, key_mode: int = 0o600) -> Path:
    key = tmp / "command.key"
    key.write_text(os.urandom(32).hex())
    key.chmod(key_mode)
    cfg = tmp / "gateway.toml"
    cfg.write_text(body.replace("KEY", str(key)).replace("DATA", str(tmp / "data")))
    return cfg


BASE = """
[gateway]
id = "xz-liushu-017"
site = "柳墅村 17号"
data_dir = "DATA"

[mqtt]
url = "mqtts://broker.example.cn:8883"
topic_prefix = "pingan/v1"

[security]
command_key_file = "KEY"
"""


def test_valid_config_is_typed_and_frozen(tmp_path: Path) -> None:
    cfg = config.load(str(write(tmp_path, BASE)))
    assert cfg.gateway_id == "xz-liushu-017"
    [node] = cfg.mqtt.brokers
    assert (node.host, node.port, node.tls, cfg.mqtt.tls) == ("broker.example.cn", 8883, True, True)
    assert cfg.topic_root == "pingan/v1/xz-liushu-017"
    assert cfg.command_key is not None and len(cfg.command_key.value) == 32
    assert str(cfg.command_key.value.hex()) not in repr(cfg)  # secrets never show in a repr
    with pytest.raises(AttributeError):
        cfg.gateway_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('id = "xz-liushu-017"', 'id = "bad id/with slash"'),
            "gateway.id: expected an id of letters A-Z a-z, digits 0-9, '_' or '-' (at most 64), "
            'got "bad id/with slash"',
        ),
        (
            ('url = "mqtts://broker.example.cn:8883"', 'url = "http://x"'),
            "mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], or a list of 1..8 of "
            'them, got "http://x"',
        ),
        (
            ('topic_prefix = "pingan/v1"', 'topic_prefix = "pingan/#"'),
            "mqtt.topic_prefix: expected topic levels of letters A-Z a-z, digits 0-9, '_' or '-', "
            "separated by '/'",
        ),
        (('site = "柳墅村 17号"', 'site = "x"\ncolour = "red"'), "gateway.colour: unknown key"),
        (("[security]", "[securty]"), "securty: unknown section"),
    ],
)
def test_errors_name_file_key_and_expectation(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, BASE.replace(*change))
    with pytest.raises(ConfigError) as exc:
        config.load(str(path))
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('url = "mqtts://broker.example.cn:8883"', ""))
    with pytest.raises(ConfigError, match=r"mqtt\.url: missing; expected mqtt://host"):
        config.load(str(path))


def test_secret_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, key_mode=0o644)
    with pytest.raises(ConfigError) as exc:
        config.load(str(path))
    text = str(exc.value)
    assert "security.command_key_file" in text
    assert "readable by group or others (mode 0644)" in text
    assert f"chmod 600 {tmp_path / 'command.key'}" in text


def test_bad_key_length_and_toml_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    (tmp_path / "command.key").write_text("abcd")
    with pytest.raises(ConfigError, match="expected 64 hex digits"):
        config.load(str(path))
    path.write_text("[gateway\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(str(path))


def test_device_on_unknown_bus_and_unknown_driver(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '\n[[devices]]\nid = "pile-1"\nkind = "charger"\nbus = "rs485"\n')
    with pytest.raises(
        ConfigError,
        match=r'devices\[0\]\.bus: expected the name of a \[\[buses\]\] entry \(none configured\), got "rs485"',
    ):
        config.load(str(path))
    path = write(tmp_path, BASE + '\n[[buses]]\nname = "x"\ndriver = "zigbee"\n')
    with pytest.raises(ConfigError, match=r"buses\[0\]\.driver: no driver named 'zigbee'"):
        config.load(str(path))


def test_unknown_rule_section(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "\n[rules.make_coffee]\ncups = 2\n")
    with pytest.raises(ConfigError, match=r"rules\.make_coffee: unknown rule"):
        config.load(str(path))


def test_check_command_exit_codes_and_one_line(tmp_path: Path) -> None:
    good = write(tmp_path, BASE)
    run = lambda p: subprocess.run(
        [sys.executable, "-m", "gatewayd", "check", "-c", str(p)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    ok = run(good)
    assert ok.returncode == 0 and "✓" in ok.stdout
    (tmp_path / "command.key").chmod(0o640)
    bad = run(good)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "chmod 600" in bad.stderr
    missing = run(tmp_path / "nope.toml")
    assert missing.returncode == 2 and "no such file" in missing.stderr


MODBUS = """
[[buses]]
name = "rs485"
driver = "modbus"
port = "/dev/ttyUSB0"
"""


@pytest.mark.parametrize(
    ("bus", "rules", "message"),
    [
        ("watch_celsius = 60.0", "", "(60), got 60.0"),  # the overheat rule's default cut
        (
            "watch_celsius = 58",
            "\n[rules.charger_overheat]\nport_max_celsius = 55\n",
            "(55), got 58.0",
        ),
        ("", "\n[rules.charger_overheat]\nport_max_celsius = 50\n", "(50), got 50.0"),  # default
    ],
)
def test_a_charger_watch_not_below_the_overheat_cut_is_refused(
    tmp_path: Path, bus: str, rules: str, message: str
) -> None:
    path = write(tmp_path, BASE + MODBUS + bus + "\n" + rules)
    with pytest.raises(ConfigError) as exc:
        config.load(str(path))
    expected = "buses[0].watch_celsius: expected below rules.charger_overheat.port_max_celsius "
    assert str(exc.value) == f"{path}: {expected}{message}"


def test_a_charger_watch_below_the_overheat_cut_is_accepted(tmp_path: Path) -> None:
    rules = "\n[rules.charger_overheat]\nport_max_celsius = 65\n"
    cfg = config.load(str(write(tmp_path, BASE + MODBUS + "watch_celsius = 64.5\n" + rules)))
    assert cfg.buses[0].settings["watch_celsius"] == 64.5
    assert cfg.rules["charger_overheat"]["port_max_celsius"] == 65
