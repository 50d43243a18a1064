"""`gatewayd check --all` tells an installer what the broker made of the gateway's login, as a
real mosquitto answers it: accepted, refused for the password, a TLS certificate the gateway
does not trust, TLS on the port but mqtt:// in the config, and nobody listening."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from firmware_stubs.broker import Broker, free_port
from tests.cli_support import gatewayd
from tests.hardening_support import Pki, TlsBroker, write_site


def check_all(tmp: Path, url: str | list[str], mqtt_extra: str = "", lang: str = "en") -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    site = write_site(tmp, url, mqtt_extra=mqtt_extra)
    result = gatewayd("--lang", lang, "check", "--all", "-c", str(site.config))
    assert "Traceback" not in result.stderr, result.stderr
    word = " broker " if lang == "en" else " 服务器 "
    return [ln for ln in result.stdout.splitlines() if word in ln]


def test_check_all_says_what_the_broker_made_of_the_login(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "gw-test", "right"],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip
    # "user root": as root, mosquitto would drop to its own user, who cannot read tmp_path.
    conf = f"user root\nallow_anonymous false\npassword_file {passwords}\n"
    broker = Broker(tmp_path, extra_conf=conf)
    broker.start()
    try:
        lines = {}
        for word in ("right", "wrong"):
            secret = tmp_path / f"{word}.password"
            secret.write_text(f"{word}\n")
            secret.chmod(0o600)
            login = f'username = "gw-test"\npassword_file = "{secret}"\n'
            lines[word] = check_all(tmp_path / word, broker.url, login)
        lines["anonymous"] = check_all(tmp_path / "anonymous", broker.url)
    finally:
        broker.stop()
    assert lines["right"] == [f"✓ broker {broker.url}: login accepted"]
    # mosquitto answers a wrong password with "not authorized" (MQTT 3.1.1 code 5); other
    # brokers say "bad username or password" (code 4): either is a ✗ that says what to check.
    refused = (
        f"✗ broker {broker.url}: not authorized (check the username and the broker's ACL)",
        f"✗ broker {broker.url}: bad username or password",
    )
    assert lines["wrong"][0] in refused and lines["anonymous"][0] in refused
    nobody = free_port()
    assert check_all(tmp_path / "nobody", f"mqtt://127.0.0.1:{nobody}") == [
        f"✗ broker mqtt://127.0.0.1:{nobody}: cannot connect to 127.0.0.1:{nobody} "
        "(Connection refused)"
    ]


def test_check_all_names_a_tls_certificate_it_does_not_trust(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    stranger = Pki(tmp_path / "stranger", "stranger")
    cert, key = pki.issue("127.0.0.1")
    broker = TlsBroker(tmp_path, pki.ca, cert, key)
    broker.start()
    try:
        trusted = check_all(tmp_path / "trusted", broker.url, f'ca_file = "{pki.ca}"\n')
        untrusted = check_all(tmp_path / "untrusted", broker.url, f'ca_file = "{stranger.ca}"\n')
        plain = f"mqtt://127.0.0.1:{broker.port}"
        not_tls = check_all(tmp_path / "plain", plain)
        zh = check_all(tmp_path / "zh", plain, lang="zh") + check_all(
            tmp_path / "zh-untrusted", broker.url, f'ca_file = "{stranger.ca}"\n', lang="zh"
        )
    finally:
        broker.stop()
    assert trusted == [f"✓ broker {broker.url}: login accepted over TLS"]
    [line] = untrusted
    assert line.startswith(f"✗ broker {broker.url}: TLS: the broker's certificate is not trusted")
    assert line.endswith("; check mqtt.ca_file")
    assert not_tls == [  # diagnosed, not a bare "connection reset by peer" (issue 19 item 4)
        f"✗ broker {plain}: 127.0.0.1:{broker.port} speaks TLS but the config says mqtt://: "
        f'use url = "mqtts://127.0.0.1:{broker.port}" in [mqtt] (and its ca_file)'
    ]
    # The same diagnoses for a Zhejiang installer: in Chinese, the URL and key names as written.
    assert zh[0] == (
        f"✗ 服务器 {plain}：127.0.0.1:{broker.port} 使用 TLS，但配置写的是 mqtt://："
        f'请在 [mqtt] 中写 url = "mqtts://127.0.0.1:{broker.port}"（并设置 ca_file）'
    )
    assert zh[1].startswith(f"✗ 服务器 {broker.url}：TLS：服务器证书不受信任（")
    assert zh[1].endswith("；请检查 mqtt.ca_file")


def test_check_all_tests_every_broker_url_one_line_and_one_json_entry_each(
    tmp_path: Path, broker: Broker
) -> None:
    """A standby that does not answer is found by `check --all` now, not on the day the
    primary fails: one line per url of [mqtt] url, and with --json an entry per url."""
    down = f"mqtt://127.0.0.1:{free_port()}"
    assert check_all(tmp_path / "en", [broker.url, down]) == [
        f"✓ broker {broker.url}: login accepted",
        f"✗ broker {down}: cannot connect to {down.removeprefix('mqtt://')} (Connection refused)",
    ]
    assert check_all(tmp_path / "zh", [down, broker.url], lang="zh") == [
        f"✗ 服务器 {down}：无法连接 {down.removeprefix('mqtt://')}（Connection refused）",
        f"✓ 服务器 {broker.url}：登录成功",
    ]
    (tmp_path / "json").mkdir()
    site = write_site(tmp_path / "json", [broker.url, down])
    result = gatewayd("check", "--all", "--json", "-c", str(site.config))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    entries = [c for c in report["checks"] if c["check"] == "broker"]
    assert [(c["url"], c["ok"]) for c in entries] == [(broker.url, True), (down, False)]
    assert entries[1]["message"].startswith(f"broker {down}: cannot connect")
