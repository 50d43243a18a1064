"""``[mqtt] url`` as one broker or a list of nodes, and the characters ids and the topic prefix
may use (the ones every broker takes in a topic: NATS closes the connection on a '.' or a
space). Good and bad cases, through the config loader and through `gatewayd check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewayd import config
from gatewayd.errors import ConfigError
from tests.cli_support import ZH, english_sentences, gatewayd, one_clear_line
from tests.harness import make_site

BASE = """
[gateway]
id = "GW"

[mqtt]
url = URL
topic_prefix = "PREFIX"
"""

DEVICE = '\n[[buses]]\nname = "rx.1"\ndriver = "serial"\nport = "/dev/null"\n\n[[devices]]\nid = "DEV"\nkind = "smoke"\nbus = "rx.1"\naddress = "1A2B3C4D"\n'  # fmt: skip


def parse(url: str = '"mqtt://b1"', gw: str = "gw-1", prefix: str = "pingan/v1",
          dev: str | None = None) -> config.Config:  # fmt: skip
    import tomllib

    text = BASE.replace("URL", url).replace("GW", gw).replace("PREFIX", prefix)
    if dev is not None:
        text += DEVICE.replace("DEV", dev)
    return config.parse(tomllib.loads(text), "gateway.toml")


def error(**kw: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(**kw)
    return str(exc.value)


def test_one_url_or_a_list_of_nodes_in_order_each_with_its_port() -> None:
    [one] = parse('"mqtts://broker.example.cn"').mqtt.brokers
    assert (one.host, one.port, one.tls, one.url) == (
        "broker.example.cn", 8883, True, "mqtts://broker.example.cn:8883",
    )  # fmt: skip
    cfg = parse('["mqtt://node1:1883", "mqtt://node2", "mqtt://10.0.0.3:11883"]')
    assert [b.url for b in cfg.mqtt.brokers] == [
        "mqtt://node1:1883", "mqtt://node2:1883", "mqtt://10.0.0.3:11883",
    ]  # fmt: skip
    assert cfg.mqtt.tls is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("[]", "mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], or a list of 1..8 of them, got a list"),
        ('["mqtt://a", "http://b"]', 'mqtt.url[1]: expected mqtt://host[:port] or mqtts://host[:port], got "http://b"'),
        ('["mqtt://a", 7]', "mqtt.url[1]: expected mqtt://host[:port] or mqtts://host[:port], got 7"),
        ('["mqtt://a", "mqtt://a"]', 'mqtt.url[1]: expected mqtt://host[:port] or mqtts://host[:port], each once, got "mqtt://a"'),
        ('["mqtts://a", "mqtt://b"]', 'mqtt.url[1]: every url needs the same scheme as the first, got "mqtt://b"'),
        ('["mqtt://a", "mqtt://b:70000"]', 'mqtt.url[1]: expected mqtt://host[:port] or mqtts://host[:port] with a port 1..65535, got "mqtt://b:70000"'),
        ('"mqtt://b:70000"', 'mqtt.url: expected mqtt://host[:port] or mqtts://host[:port] with a port 1..65535, got "mqtt://b:70000"'),
        ("[" + ", ".join(f'"mqtt://n{i}"' for i in range(9)) + "]", "mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], or a list of 1..8 of them, got a list"),
    ],
    ids=["empty", "not-mqtt", "not-a-string", "twice", "mixed-schemes", "port", "port-single", "too-many"],
)  # fmt: skip
def test_bad_url_lists_name_the_entry_and_what_it_must_be(url: str, message: str) -> None:
    assert f"gateway.toml: {message}" in error(url=url)


ALLOWED_ID = "an id of letters A-Z a-z, digits 0-9, '_' or '-' (at most 64)"
ALLOWED_PREFIX = (
    "topic levels of letters A-Z a-z, digits 0-9, '_' or '-', separated by '/' "
    "(none leading, trailing or doubled)"
)


def test_ids_and_prefix_of_the_portable_characters_are_taken() -> None:
    cfg = parse(gw="Xz_liushu-017", prefix="pingan/v1/zj_hz-01", dev="smoke_301-B")
    assert cfg.topic_root == "pingan/v1/zj_hz-01/Xz_liushu-017"
    assert [d.id for d in cfg.devices] == ["smoke_301-B"]
    assert [b.name for b in cfg.buses] == ["rx.1"]  # a bus name is no topic level: dots stay


@pytest.mark.parametrize("gw", ["xz.liushu.017", "xz liushu", "xz/017", "柳墅017", "-xz", "x" * 65])
def test_gateway_ids_outside_the_set_are_refused(gw: str) -> None:
    assert f'gateway.id: expected {ALLOWED_ID}, got "{gw}"' in error(gw=gw)


@pytest.mark.parametrize("dev", ["smoke.301", "smoke 301", "smoke+301", "smoke#1"])
def test_device_ids_outside_the_set_are_refused(dev: str) -> None:
    assert f'devices[0].id: expected {ALLOWED_ID}, got "{dev}"' in error(dev=dev)


@pytest.mark.parametrize(
    "prefix", ["pingan.v1", "/pingan/v1", "pingan/v1/", "pingan//v1", "pingan/#", "pingan/+/v1",
               "ping an", ""],
)  # fmt: skip
def test_topic_prefixes_outside_the_set_are_refused(prefix: str) -> None:
    assert f'mqtt.topic_prefix: expected {ALLOWED_PREFIX}, got "{prefix}"' in error(prefix=prefix)


def test_check_refuses_a_dotted_id_in_one_line_in_english_and_chinese(tmp_path: Path) -> None:
    urls = ["mqtt://127.0.0.1:9", "mqtt://127.0.0.1:10"]
    site = make_site(tmp_path, urls, gateway_id="xz.liushu.017")
    en = one_clear_line(gatewayd("check", "-c", str(site.config)))
    zh = one_clear_line(gatewayd("check", "-c", str(site.config), env=ZH))
    assert en.endswith(f'gateway.id: expected {ALLOWED_ID}, got "xz.liushu.017"'), en
    assert "gateway.id" in zh and "由字母 A-Z a-z、数字 0-9、'_'、'-' 组成的编号" in zh, zh
    assert english_sentences(zh) == [], zh


@pytest.mark.parametrize(
    ("urls", "key"),
    [(["mqtts://a", "mqtt://b"], "mqtt.url[1]"), (["mqtt://a", "mqtt://a"], "mqtt.url[1]"),
     ([], "mqtt.url")],
    ids=["mixed-schemes", "twice", "empty"],
)  # fmt: skip
def test_url_list_errors_in_chinese_keep_the_key(tmp_path: Path, urls: list[str], key: str) -> None:
    site = make_site(tmp_path, urls)
    zh = one_clear_line(gatewayd("check", "-c", str(site.config), env=ZH))
    assert f"{key}：" in zh or f"{key}: " in zh, zh
    assert english_sentences(zh) == [], zh
